//! The export as CSV, for a spreadsheet: one row per filing (a practice never sent has one row
//! without an institution). Semicolon-separated with a byte-order mark, as spreadsheets set up
//! for Italian open it; a cell a spreadsheet would read as a formula is prefixed with `'`.

use app::records::ExportedPractice;
use domain::Lang;

use crate::view::Tr;
use crate::AppState;

/// One cell, quoted as RFC 4180 asks, never a formula.
fn cell(value: &str) -> String {
    let value =
        if value.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{value}") } else { value.to_string() };
    if value.contains([';', '"', '\n', '\r', ',']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

fn row(cells: &[&str]) -> String {
    let mut line = cells.iter().map(|c| cell(c)).collect::<Vec<_>>().join(";");
    line.push_str("\r\n");
    line
}

/// The CSV text of `practices`, with names (services, institutions, filings, states) in the
/// user's language.
pub fn export(app: &AppState, tr: &Tr<'_>, lang: Lang, practices: &[ExportedPractice]) -> String {
    let mut out = String::from("\u{feff}");
    let header: Vec<String> = COLUMNS.iter().map(|c| tr.msg(c)).collect();
    out.push_str(&row(&header.iter().map(String::as_str).collect::<Vec<_>>()));
    for p in practices {
        let service = app.core.catalog.service(&p.service);
        let practice = [
            p.reference.clone().unwrap_or_default(),
            service.map_or_else(|| p.service.clone(), |s| s.title.get(lang).to_string()),
            p.data.get("business.name").cloned().unwrap_or_default(),
            p.data.get("business.tax_code").cloned().unwrap_or_default(),
            tr.msg(&format!("state-{}", p.state.as_str())),
            p.submitted_at.map(domain::italian_display).unwrap_or_default(),
        ];
        let mut lines: Vec<[String; 4]> = p
            .deliveries
            .iter()
            .map(|d| {
                let filing = service
                    .and_then(|s| s.recipients.iter().find(|r| r.institution == d.institution))
                    .and_then(|r| app.core.catalog.filing(r))
                    .map_or_else(|| d.filing.clone(), |f| f.title.get(lang).to_string());
                [
                    app.institution_name(&d.institution, lang),
                    filing,
                    tr.msg(&format!("delivery-state-{}", d.state.as_str())),
                    d.protocol_number.clone().unwrap_or_default(),
                ]
            })
            .collect();
        if lines.is_empty() {
            lines.push(Default::default());
        }
        for delivery in &lines {
            let cells: Vec<&str> = practice.iter().chain(delivery.iter()).map(String::as_str).collect();
            out.push_str(&row(&cells));
        }
    }
    out
}

/// The columns' names (message ids).
const COLUMNS: [&str; 10] = [
    "practices-reference",
    "practices-service",
    "receipt-business",
    "csv-business-code",
    "practices-state",
    "practice-submitted",
    "practice-institution",
    "service-filing",
    "csv-delivery-state",
    "practice-protocol",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_quoted_and_never_formulas() {
        assert_eq!(cell("Bar Roma"), "Bar Roma");
        assert_eq!(cell("Bar; Roma"), "\"Bar; Roma\"");
        assert_eq!(cell("Il \"Bar\""), "\"Il \"\"Bar\"\"\"");
        assert_eq!(cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(cell("+39 06"), "'+39 06");
        assert_eq!(row(&["a", "b"]), "a;b\r\n");
    }
}
