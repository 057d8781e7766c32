//! The portal's cookies, written and read with the `cookie` crate. Every one is `Secure`,
//! `Path=/` (they are `__Host-` cookies) and, but for the language, `HttpOnly` and
//! `SameSite=Strict`. A leaf module: it imports no handler.

use axum::http::{header, HeaderMap, HeaderValue};
use cookie::{Cookie, SameSite};

pub const ACTING_COOKIE: &str = "__Host-sportello-delega";

/// How a cookie is kept by the browser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A credential (the session, the delegation in use): HttpOnly, SameSite=Strict.
    Credential,
    /// A preference a page may follow from another site (the language): SameSite=Lax.
    Preference,
}

/// `Set-Cookie` for `name` = `value`, kept `max_age_secs`.
pub fn set(name: &str, value: &str, kind: Kind, max_age_secs: u64) -> Option<HeaderValue> {
    let seconds = i64::try_from(max_age_secs).unwrap_or(i64::MAX);
    let built = Cookie::build((name, value))
        .path("/")
        .secure(true)
        .http_only(kind == Kind::Credential)
        .same_site(if kind == Kind::Credential { SameSite::Strict } else { SameSite::Lax })
        .max_age(cookie::time::Duration::seconds(seconds))
        .build();
    HeaderValue::from_str(&built.to_string()).ok()
}

/// `Set-Cookie` that makes the browser forget `name`.
pub fn clear(name: &str) -> Option<HeaderValue> {
    set(name, "", Kind::Credential, 0)
}

/// The value of the cookie `name` a request carries, if any (unreadable pairs are skipped).
pub fn get(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_strict_and_preferences_lax() {
        let session = set("__Host-s", "abc", Kind::Credential, 3600).expect("header");
        let text = session.to_str().expect("text");
        for part in ["__Host-s=abc", "Path=/", "Secure", "HttpOnly", "SameSite=Strict", "Max-Age=3600"] {
            assert!(text.contains(part), "{part} in {text}");
        }
        let lang = set("__Host-l", "en", Kind::Preference, 60).expect("header");
        let text = lang.to_str().expect("text");
        assert!(text.contains("SameSite=Lax") && !text.contains("HttpOnly"), "{text}");
        assert!(clear("__Host-s").expect("header").to_str().expect("text").contains("Max-Age=0"));
    }

    #[test]
    fn the_named_cookie_is_found_among_others_and_junk() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1; junk; __Host-s=xyz"));
        headers.append(header::COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(get(&headers, "__Host-s").as_deref(), Some("xyz"));
        assert_eq!(get(&headers, "b").as_deref(), Some("2"));
        assert_eq!(get(&headers, "missing"), None);
    }
}
