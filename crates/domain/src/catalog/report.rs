//! Reporting a catalog's mistakes where they stand (file, line, column), and the shapes of its
//! ids.

use serde::Deserialize;
use toml::Spanned;

use super::model::{CatalogError, Source};
use crate::text::Text;

/// Collects errors against the file being read.
pub(super) struct Reporter<'a> {
    pub(super) source: &'a Source,
    pub(super) errors: &'a mut Vec<CatalogError>,
}

impl Reporter<'_> {
    pub(super) fn at(&mut self, offset: usize, message: impl Into<String>) {
        let (line, column) = crate::line_column(&self.source.text, offset);
        self.errors.push(CatalogError { file: self.source.path.clone(), line, column, message: message.into() });
    }

    pub(super) fn text(&mut self, text: &Spanned<Text>, what: &str) {
        if text.get_ref().it.trim().is_empty() || text.get_ref().en.trim().is_empty() {
            self.at(text.span().start, format!("{what} needs a non-empty Italian (it) and English (en) text"));
        }
    }
}

pub(super) fn is_segment(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// A dotted id of at least two segments: `group.name`.
pub(super) fn is_field_id(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() >= 2 && parts.iter().all(|p| is_segment(p))
}

/// A dotted target path in a filing payload: segments of letters, digits and `_`.
pub(super) fn is_target_path(s: &str) -> bool {
    s.split('.').all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
}

pub(super) fn parse_toml<'de, T: Deserialize<'de>>(source: &'de Source, errors: &mut Vec<CatalogError>) -> Option<T> {
    match toml::from_str::<T>(&source.text) {
        Ok(v) => Some(v),
        Err(e) => {
            let offset = e.span().map_or(0, |s| s.start);
            let mut r = Reporter { source, errors };
            r.at(offset, e.message().trim().to_string());
            None
        }
    }
}
