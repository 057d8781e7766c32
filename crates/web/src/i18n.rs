//! Translations, with Fluent. Italian first, English second; the message files are
//! `crates/web/i18n/{it,en}.ftl`. Validation reasons use their `Reason::code()` as message id.

use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource};

use domain::catalog::Text;
use domain::validation::Reason;
use domain::Lang;

/// Both languages' message bundles, loaded once at start.
pub struct Translations {
    it: FluentBundle<FluentResource>,
    en: FluentBundle<FluentResource>,
}

impl std::fmt::Debug for Translations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Translations { it, en }")
    }
}

fn bundle(tag: &str, source: &'static str) -> Result<FluentBundle<FluentResource>, String> {
    let lang: unic_langid::LanguageIdentifier = tag.parse().map_err(|e| format!("{tag}: {e}"))?;
    let resource =
        FluentResource::try_new(source.to_string()).map_err(|(_, errors)| format!("{tag}.ftl: {errors:?}"))?;
    let mut bundle = FluentBundle::new_concurrent(vec![lang]);
    bundle.set_use_isolating(false);
    bundle.add_resource(resource).map_err(|errors| format!("{tag}.ftl: {errors:?}"))?;
    Ok(bundle)
}

impl Translations {
    /// Loads the embedded message files. Fails only if a file does not parse, which the test
    /// suite rules out.
    pub fn load() -> Result<Self, String> {
        Ok(Self {
            it: bundle("it", include_str!("../i18n/it.ftl"))?,
            en: bundle("en", include_str!("../i18n/en.ftl"))?,
        })
    }

    /// The message `id` with `args`, in `lang`; the id itself if the message is missing.
    /// Whether `id` has a translation (for catalog groups that may lack a title).
    pub fn has_message(&self, lang: Lang, id: &str) -> bool {
        let bundle = match lang {
            Lang::It => &self.it,
            Lang::En => &self.en,
        };
        bundle.has_message(id)
    }

    pub fn message(&self, lang: Lang, id: &str, args: &[(&str, String)]) -> String {
        let bundle = match lang {
            Lang::It => &self.it,
            Lang::En => &self.en,
        };
        let Some(pattern) = bundle.get_message(id).and_then(|m| m.value()) else {
            tracing::error!(id, lang = lang.code(), "missing translation");
            return id.to_string();
        };
        let mut fluent_args = FluentArgs::new();
        for (k, v) in args {
            fluent_args.set(*k, v.clone());
        }
        let mut errors = Vec::new();
        let text = bundle.format_pattern(pattern, Some(&fluent_args), &mut errors);
        if !errors.is_empty() {
            tracing::error!(id, lang = lang.code(), ?errors, "translation error");
        }
        text.into_owned()
    }

    /// Why a field's value was refused, naming the field by its label.
    pub fn reason(&self, lang: Lang, label: Option<&Text>, field_id: &str, reason: &Reason) -> String {
        let mut args = reason.args();
        args.push(("field", label.map_or_else(|| field_id.to_string(), |l| l.get(lang).to_string())));
        self.message(lang, reason.code(), &args)
    }

    pub fn has(&self, lang: Lang, id: &str) -> bool {
        let bundle = match lang {
            Lang::It => &self.it,
            Lang::En => &self.en,
        };
        bundle.has_message(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every reason, one of each: the match makes this list fail to compile when a reason is
    /// added without a message.
    fn all_reasons() -> Vec<Reason> {
        let all = vec![
            Reason::Required,
            Reason::UnknownField,
            Reason::TooLong { max: 1 },
            Reason::PersonTaxCodeFormat,
            Reason::PersonTaxCodeBirthDate,
            Reason::PersonTaxCodeCheckCharacter,
            Reason::PersonTaxCodeBirthMismatch,
            Reason::VatNumberFormat,
            Reason::VatNumberOffice,
            Reason::VatNumberCheckDigit,
            Reason::BusinessTaxCodeFormat,
            Reason::CompanyTaxCodeCheckDigit,
            Reason::CapFormat,
            Reason::ProvinceUnknown,
            Reason::AtecoFormat,
            Reason::EmailFormat,
            Reason::DateFormat,
            Reason::DateInFuture,
            Reason::DateTooEarly { min: "2026-01-01".into() },
            Reason::DateTooLate { max: "2026-01-01".into() },
            Reason::IntegerFormat,
            Reason::AmountFormat,
            Reason::NumberTooSmall { min: 0 },
            Reason::NumberTooLarge { max: 9 },
            Reason::NotAnOption { options: "a, b".into() },
            Reason::ControlCharacters,
            Reason::NotAtFault,
            Reason::NotCorrected,
            Reason::NoOffice { institution: "Registro delle imprese".into() },
            Reason::Receivability {
                institution: "inail".into(),
                name: domain::catalog::Text { it: "INAIL".into(), en: "INAIL".into() },
                message: domain::catalog::Text { it: "troppo corta".into(), en: "too short".into() },
            },
        ];
        for r in &all {
            match r {
                Reason::Required
                | Reason::UnknownField
                | Reason::TooLong { .. }
                | Reason::PersonTaxCodeFormat
                | Reason::PersonTaxCodeBirthDate
                | Reason::PersonTaxCodeCheckCharacter
                | Reason::PersonTaxCodeBirthMismatch
                | Reason::VatNumberFormat
                | Reason::VatNumberOffice
                | Reason::VatNumberCheckDigit
                | Reason::BusinessTaxCodeFormat
                | Reason::CompanyTaxCodeCheckDigit
                | Reason::CapFormat
                | Reason::ProvinceUnknown
                | Reason::AtecoFormat
                | Reason::EmailFormat
                | Reason::DateFormat
                | Reason::DateInFuture
                | Reason::DateTooEarly { .. }
                | Reason::DateTooLate { .. }
                | Reason::IntegerFormat
                | Reason::AmountFormat
                | Reason::NumberTooSmall { .. }
                | Reason::NumberTooLarge { .. }
                | Reason::NotAnOption { .. }
                | Reason::ControlCharacters
                | Reason::NotAtFault
                | Reason::NotCorrected
                | Reason::NoOffice { .. }
                | Reason::Receivability { .. } => {}
            }
        }
        all
    }

    #[test]
    fn every_reason_speaks_both_languages_and_names_the_field() {
        let t = Translations::load().expect("load");
        let label = Text { it: "Codice fiscale".into(), en: "Tax code".into() };
        for reason in all_reasons() {
            for lang in [Lang::It, Lang::En] {
                assert!(t.has(lang, reason.code()), "{} missing in {}", reason.code(), lang.code());
                let text = t.reason(lang, Some(&label), "owner.tax_code", &reason);
                assert!(text.starts_with(label.get(lang)), "{text}");
                assert!(!text.contains('{'), "unresolved placeholder: {text}");
            }
        }
    }

    #[test]
    fn both_files_have_the_same_messages() {
        let ids = |src: &str| -> Vec<String> {
            let mut v: Vec<String> = src
                .lines()
                .filter(|l| !l.starts_with('#') && l.contains(" = "))
                .filter_map(|l| l.split(" = ").next().map(str::to_string))
                .collect();
            v.sort();
            v
        };
        assert_eq!(ids(include_str!("../i18n/it.ftl")), ids(include_str!("../i18n/en.ftl")));
    }

    /// Every `.rs` and `.html` file under `dir`.
    fn sources(dir: &std::path::Path, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).expect("dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs" || e == "html") {
                out.push((path.display().to_string(), std::fs::read_to_string(&path).expect("read")));
            }
        }
    }

    /// The literal message ids passed to `msg("…")`, `fmt("…", …)` and `message(lang, "…", …)`.
    fn literal_ids(text: &str) -> Vec<String> {
        let mut ids = Vec::new();
        for call in ["msg(\"", "fmt(\"", "message(lang, \""] {
            for (at, _) in text.match_indices(call) {
                let rest = &text[at + call.len()..];
                let id: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
                if rest[id.len()..].starts_with('"') && !id.is_empty() {
                    ids.push(id);
                }
            }
        }
        ids
    }

    #[test]
    fn every_message_id_the_code_uses_exists_in_both_languages() {
        let t = Translations::load().expect("load");
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        sources(&root.join("src"), &mut files);
        sources(&root.join("templates"), &mut files);
        let mut used = Vec::new();
        for (file, text) in &files {
            used.extend(literal_ids(text).into_iter().map(|id| (file.clone(), id)));
        }
        assert!(used.len() > 200, "the scan finds the calls ({} found)", used.len());
        // Ids made from domain values: every value has its message.
        for state in domain::delivery::DeliveryState::ALL {
            used.push(("delivery states".into(), format!("delivery-state-{}", state.as_str())));
        }
        for state in domain::practice::PracticeState::ALL {
            used.push(("practice states".into(), format!("state-{}", state.as_str())));
            used.push(("practice states".into(), format!("practices-tab-{}", state.as_str())));
        }
        let missing: Vec<String> = used
            .iter()
            .flat_map(|(file, id)| [Lang::It, Lang::En].map(|lang| (file, id, lang)))
            .filter(|(_, id, lang)| !t.has(*lang, id))
            .map(|(file, id, lang)| format!("{file}: `{id}` has no {} message", lang.code()))
            .collect();
        assert!(missing.is_empty(), "{missing:#?}");
    }
}
