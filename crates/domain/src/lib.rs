//! Sportello's domain: the rules of integrated filings, with no I/O.
//!
//! - [`identifiers`]: codice fiscale, partita IVA and the other formats, as types that cannot
//!   hold an invalid value;
//! - [`authorisation`]: who may file for which business at each institution;
//! - [`catalog`]: institutions, filing kinds, the common-data dictionary and the integrated
//!   services, parsed and cross-checked from TOML text;
//! - [`practice`]: the practice ("pratica") state machine, draft and submission rules, and the
//!   construction of one filing per recipient;
//! - [`delegation`]: sub-delegation to collaborators, its scope and its checks;
//! - [`delivery`]: one recipient's filing from queued to the institution's outcome;
//! - [`validation`]: why a value was refused, as data the edge translates.
//!
//! Time and randomness come from the caller ([`Clock`], [`Randomness`]), so every rule is
//! testable.

pub mod authorisation;
pub mod catalog;
pub mod delegation;
pub mod delivery;
pub mod identifiers;
pub mod practice;
pub mod receivability;
pub mod routing;
pub mod text;
pub mod validation;

/// Line and column (both from 1, the column in characters) of byte `offset` in `text`, for
/// `file:line:column` messages about configuration files.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

use time::{Date, OffsetDateTime, UtcOffset};

/// The two languages of the interface. Italian first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Lang {
    #[default]
    It,
    En,
}

impl Lang {
    /// Picks the language from an `Accept-Language`-like value: English only if English comes
    /// before Italian; Italian otherwise.
    pub fn negotiate(header: &str) -> Lang {
        for part in header.split(',') {
            let tag = part.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
            if tag == "it" || tag.starts_with("it-") {
                return Lang::It;
            }
            if tag == "en" || tag.starts_with("en-") {
                return Lang::En;
            }
        }
        Lang::It
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::It => "it",
            Lang::En => "en",
        }
    }
}

/// The source of the current time, injected everywhere a rule needs it.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> OffsetDateTime;
}

/// The source of randomness (identifiers, tokens), injected like the clock.
pub trait Randomness: Send + Sync + std::fmt::Debug {
    /// Fills `dest` with unpredictable bytes, or says the system could not provide them.
    fn fill(&self, dest: &mut [u8]) -> Result<(), RandomnessUnavailable>;
}

/// The operating system's random source failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no randomness available")]
pub struct RandomnessUnavailable;

/// Europe/Rome from the IANA time-zone database bundled with the binary (no file is read).
fn rome() -> Option<&'static jiff::tz::TimeZone> {
    static ROME: std::sync::OnceLock<Option<jiff::tz::TimeZone>> = std::sync::OnceLock::new();
    ROME.get_or_init(|| jiff::tz::db().get("Europe/Rome").ok()).as_ref()
}

/// The instant `now` on Italian clocks (Europe/Rome: UTC+1, UTC+2 in summer time), by the
/// time-zone database.
pub fn italian_time(now: OffsetDateTime) -> OffsetDateTime {
    let now = now.to_offset(UtcOffset::UTC);
    let seconds = jiff::Timestamp::new(now.unix_timestamp(), 0)
        .ok()
        .and_then(|instant| Some(rome()?.to_offset(instant).seconds()));
    // The database is bundled: Europe/Rome is always there; UTC+1 only as a last resort.
    let offset = seconds.and_then(|s| UtcOffset::from_whole_seconds(s).ok());
    now.to_offset(offset.unwrap_or(UtcOffset::from_hms(1, 0, 0).unwrap_or(UtcOffset::UTC)))
}

/// The calendar date in Italy (Europe/Rome) at instant `now`: the date users mean when they
/// say "today".
pub fn italian_date(now: OffsetDateTime) -> Date {
    italian_time(now).date()
}

/// The instant an Italian calendar day begins (midnight on Italian clocks), for searches by
/// date.
pub fn italian_day_start(date: Date) -> OffsetDateTime {
    let midnight_utc = date.midnight().assume_utc();
    [2, 1]
        .into_iter()
        .map(|hours| midnight_utc - time::Duration::hours(hours))
        .find(|t| italian_date(*t) == date && italian_date(*t - time::Duration::seconds(1)) != date)
        .unwrap_or(midnight_utc - time::Duration::hours(1))
}

/// `27/11/2026 14:05`, on Italian clocks: how dates and times are shown to users.
pub fn italian_display(at: OffsetDateTime) -> String {
    let t = italian_time(at);
    format!("{:02}/{:02}/{} {:02}:{:02}", t.day(), u8::from(t.month()), t.year(), t.hour(), t.minute())
}

#[cfg(test)]
mod day_start_tests {
    use super::*;
    use time::macros::{date, datetime};

    #[test]
    fn italian_days_begin_at_italian_midnight() {
        assert_eq!(italian_day_start(date!(2026 - 11 - 27)), datetime!(2026-11-26 23:00 UTC));
        assert_eq!(italian_day_start(date!(2026 - 07 - 01)), datetime!(2026-06-30 22:00 UTC));
        // The day summer time begins starts at winter midnight.
        assert_eq!(italian_day_start(date!(2026 - 03 - 29)), datetime!(2026-03-28 23:00 UTC));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    #[test]
    fn language_negotiation_prefers_italian() {
        assert_eq!(Lang::negotiate("en-GB,en;q=0.9"), Lang::En);
        assert_eq!(Lang::negotiate("it-IT,en;q=0.8"), Lang::It);
        assert_eq!(Lang::negotiate("de-DE"), Lang::It);
        assert_eq!(Lang::negotiate(""), Lang::It);
    }

    #[test]
    fn italian_date_follows_summer_time() {
        assert_eq!(italian_date(datetime!(2026-11-27 23:30 UTC)), date!(2026 - 11 - 28));
        assert_eq!(italian_date(datetime!(2026-11-27 22:30 UTC)), date!(2026 - 11 - 27));
        assert_eq!(italian_date(datetime!(2026-07-01 22:30 UTC)), date!(2026 - 07 - 02));
        assert_eq!(italian_date(datetime!(2026-07-01 21:30 UTC)), date!(2026 - 07 - 01));
        assert_eq!(italian_display(datetime!(2026-07-01 21:30 UTC)), "01/07/2026 23:30");
        assert_eq!(italian_display(datetime!(2026-11-27 13:05 UTC)), "27/11/2026 14:05");
        // The switches of 2027, to the second: 28 March and 31 October at 01:00 UTC.
        assert_eq!(italian_display(datetime!(2027-03-28 00:59:59 UTC)), "28/03/2027 01:59");
        assert_eq!(italian_display(datetime!(2027-03-28 01:00 UTC)), "28/03/2027 03:00");
        assert_eq!(italian_display(datetime!(2027-10-31 00:59:59 UTC)), "31/10/2027 02:59");
        assert_eq!(italian_display(datetime!(2027-10-31 01:00 UTC)), "31/10/2027 02:00");
        // History from the database, not a rule: before 1996 summer time ended in September.
        assert_eq!(italian_display(datetime!(1995-10-10 12:00 UTC)), "10/10/1995 13:00");
    }
}
