//! Texts the catalog gives in both of the portal's languages.

use serde::{Deserialize, Serialize};

use crate::Lang;

/// A text in Italian and English.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Text {
    pub it: String,
    pub en: String,
}

impl Text {
    /// The same words in both languages (a code, a name that is not translated).
    pub fn same(words: &str) -> Self {
        Self { it: words.to_string(), en: words.to_string() }
    }

    pub fn get(&self, lang: Lang) -> &str {
        match lang {
            Lang::It => &self.it,
            Lang::En => &self.en,
        }
    }
}
