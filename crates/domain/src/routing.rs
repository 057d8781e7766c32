//! Territorial competence: which office of an institution a filing goes to, from the
//! practice's data ("ufficio competente"). A business registers with the Chamber of Commerce of
//! its seat's province (codice civile art. 2196); since DM 16 Feb 2018 several chambers cover
//! more than one province.
//!
//! ```toml
//! [routing]
//! fields = ["seat.province", "business.rea_number"]  # the office follows the first of these
//!                                  # a service collects; a value such as `MI-1234567` (a REA
//!                                  # number) counts by its province code before the `-`
//! [[routing.offices]]
//! id = "cciaa-milano-monza-brianza-lodi"
//! name.it = "Camera di commercio di Milano Monza Brianza Lodi"
//! name.en = "Chamber of Commerce of Milano Monza Brianza Lodi"
//! provinces = ["MI", "MB", "LO"]
//! ```
//!
//! The catalog check makes every office's provinces valid, each province served once, every
//! province served when the first field is a province, and every service that reaches the
//! institution collect one of the fields: a filing is never sent somewhere arbitrary.

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::identifiers::PROVINCES;
use crate::text::Text;

/// One office and the provinces it is competent for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Office {
    pub id: String,
    pub name: Text,
    pub provinces: Vec<String>,
}

/// How an institution's filings are routed to its offices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Routing {
    /// The dictionary fields whose value chooses the office, the first one present first.
    pub fields: Vec<String>,
    pub offices: Vec<Office>,
}

impl Routing {
    /// The office competent for `value`: a province code, or a code that starts with one
    /// (`MI-1234567`).
    pub fn office_for(&self, value: &str) -> Option<&Office> {
        let key = value.trim().split('-').next().unwrap_or_default().trim();
        self.offices.iter().find(|o| o.provinces.iter().any(|p| p.eq_ignore_ascii_case(key)))
    }

    /// The field that routes `data`, and its value: the first of [`Routing::fields`] given.
    pub fn key_in<'a>(&'a self, data: &'a std::collections::BTreeMap<String, String>) -> Option<(&'a str, &'a str)> {
        self.fields.iter().find_map(|f| data.get(f).filter(|v| !v.trim().is_empty()).map(|v| (f.as_str(), v.as_str())))
    }

    pub fn office(&self, id: &str) -> Option<&Office> {
        self.offices.iter().find(|o| o.id == id)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRouting {
    fields: Spanned<Vec<String>>,
    offices: Vec<Spanned<RawOffice>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOffice {
    id: Spanned<String>,
    name: Spanned<Text>,
    provinces: Spanned<Vec<String>>,
}

/// Builds a routing table, reporting each mistake at its offset with `report`.
pub(crate) fn build(
    raw: &RawRouting,
    province_field: impl Fn(&str) -> Option<bool>,
    report: &mut dyn FnMut(usize, String),
) -> Option<Routing> {
    let fields = raw.fields.get_ref().clone();
    let kinds: Vec<Option<bool>> = fields.iter().map(|f| province_field(f)).collect();
    if let Some(unknown) = fields.iter().zip(&kinds).find(|(_, k)| k.is_none()).map(|(f, _)| f) {
        report(raw.fields.span().start, format!("routing field `{unknown}` is not a dictionary field"));
        return None;
    }
    if fields.is_empty() {
        report(raw.fields.span().start, "routing needs at least one field".to_string());
        return None;
    }
    let is_province = kinds.first().copied().flatten().unwrap_or(false);
    let mut offices: Vec<Office> = Vec::new();
    for spanned in &raw.offices {
        let o = spanned.get_ref();
        let id = o.id.get_ref().clone();
        if offices.iter().any(|x| x.id == id) {
            report(o.id.span().start, format!("office `{id}` is defined twice"));
        }
        let name = o.name.get_ref();
        if name.it.trim().is_empty() || name.en.trim().is_empty() {
            report(o.name.span().start, format!("office `{id}` needs a name in Italian (it) and English (en)"));
        }
        let mut provinces = Vec::new();
        for p in o.provinces.get_ref() {
            let code = p.trim().to_ascii_uppercase();
            if is_province && !PROVINCES.contains(&code.as_str()) {
                report(o.provinces.span().start, format!("office `{id}`: `{p}` is not a province code"));
            }
            if let Some(other) = offices.iter().find(|x| x.provinces.contains(&code)) {
                report(
                    o.provinces.span().start,
                    format!("province {code} is served by both `{}` and `{id}`", other.id),
                );
            }
            provinces.push(code);
        }
        offices.push(Office { id, name: name.clone(), provinces });
    }
    if is_province {
        let missing: Vec<&str> =
            PROVINCES.iter().copied().filter(|p| !offices.iter().any(|o| o.provinces.iter().any(|x| x == p))).collect();
        if !missing.is_empty() {
            report(raw.fields.span().start, format!("no office serves the provinces {}", missing.join(", ")));
        }
    }
    Some(Routing { fields, offices })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routing() -> Routing {
        let office = |id: &str, provinces: &[&str]| Office {
            id: id.into(),
            name: Text { it: id.into(), en: id.into() },
            provinces: provinces.iter().map(|p| (*p).to_string()).collect(),
        };
        Routing {
            fields: vec!["seat.province".into(), "business.rea_number".into()],
            offices: vec![
                office("cciaa-roma", &["RM"]),
                office("cciaa-milano-monza-brianza-lodi", &["MI", "MB", "LO"]),
            ],
        }
    }

    #[test]
    fn the_seats_province_chooses_the_office() {
        let r = routing();
        assert_eq!(r.office_for("MB").map(|o| o.id.as_str()), Some("cciaa-milano-monza-brianza-lodi"));
        assert_eq!(r.office_for("rm").map(|o| o.id.as_str()), Some("cciaa-roma"));
        assert_eq!(r.office_for("TO"), None, "never sent somewhere arbitrary");
        assert_eq!(r.office_for("LO-0123456").map(|o| o.id.as_str()), Some("cciaa-milano-monza-brianza-lodi"));
        let data = std::collections::BTreeMap::from([("business.rea_number".to_string(), "RM-1".to_string())]);
        assert_eq!(r.key_in(&data), Some(("business.rea_number", "RM-1")));
    }

    #[test]
    fn the_table_must_serve_every_province_once() {
        let text = "fields = [\"seat.province\"]\n[[offices]]\nid = \"a\"\nname.it = \"A\"\nname.en = \"A\"\nprovinces = [\"RM\", \"XX\"]\n[[offices]]\nid = \"b\"\nname.it = \"B\"\nname.en = \"B\"\nprovinces = [\"RM\"]\n";
        let raw: RawRouting = toml::from_str(text).expect("toml");
        let mut errors = Vec::new();
        let routing = build(&raw, |f| (f == "seat.province").then_some(true), &mut |_, m| errors.push(m));
        assert!(routing.is_some());
        assert!(errors.iter().any(|e| e.contains("`XX` is not a province code")), "{errors:?}");
        assert!(errors.iter().any(|e| e.contains("RM is served by both `a` and `b`")), "{errors:?}");
        assert!(errors.iter().any(|e| e.starts_with("no office serves the provinces AG, AL")), "{errors:?}");
        let mut errors = Vec::new();
        let unknown = "fields = [\"seat.nowhere\"]\noffices = []\n";
        let raw: RawRouting = toml::from_str(unknown).expect("toml");
        assert!(build(&raw, |_| None, &mut |_, m| errors.push(m)).is_none());
        assert!(errors[0].contains("`seat.nowhere` is not a dictionary field"), "{errors:?}");
    }
}
