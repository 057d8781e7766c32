//! Per-institution delivery settings ("canali"), from a TOML file:
//!
//! ```toml
//! portal_id = "sportello"                       # iss of every signed request
//! callback_base_url = "https://localhost:8443"  # where institutions call back
//! certificate = "pki/portal.pem"                # the portal's certificate (TLS client + ModI)
//! key = "pki/portal-key.pem"
//!
//! [institutions.inps]
//! base_url = "https://127.0.0.1:9101"
//! ca = "pki/ca.pem"                 # trusted issuer of the institution's server certificate
//! certificate = "pki/inps.pem"      # the institution's certificate: checks its callbacks
//! timeout_ms = 5000
//! max_attempts = 5
//! base_delay_ms = 1000
//! max_delay_ms = 60000
//! poll_interval_ms = 600000        # optional: ask for news at this pace, for institutions
//!                                  # that do not call back
//! trusts_portal_delegations = false  # optional: collaborators may act there on the portal's
//!                                  # own record of a sub-delegation, before the institution
//!                                  # confirms it
//! profile = "profiles/inps.toml"   # optional: the institution's own interface (see
//!                                  # `crate::profile`); default: Sportello's own
//! callback_deadline_ms = 3600000   # optional, overrides the profile's: no callback by then → ask
//! no_news_after_ms = 604800000     # optional, overrides the profile's: silent by then → no news
//!
//! [institutions.inps.pdnd]          # only for a profile with security = "pdnd"
//! token_url = "https://auth.interop.pagopa.it/token.oauth2"
//! client_id = "9b361d49-33f4-4f1e-a88b-4e12661f2309"
//! purpose_id = "1b361d49-33f4-4f1e-a88b-4e12661f2300"
//! assertion_audience = "auth.interop.pagopa.it/client-assertion"
//! kid = "ZmYxZGE2YjQtMzY2Yy00NWI5LThjNGItMDJmYmQyZGIyMmZh"
//! ca = "pki/pdnd-ca.pem"            # trusted issuer of the token endpoint's certificate
//! key = "pki/pdnd-client-key.pem"   # optional: the key registered on PDND (RSA PKCS#1 →
//!                                   #   RS256, EC PKCS#8 → ES256); default the portal's key
//!
//! [institutions.registro-imprese.offices.cciaa-roma]   # optional: one address per office of
//! base_url = "https://127.0.0.1:9201"  # an institution that routes by territory (the catalog's
//!                                   # [routing]); ca, certificate and audience default to the
//!                                   # institution's. A filing for an office without its
//!                                   # own address goes to base_url, naming the office.
//! ```
//!
//! Relative paths are read from the file's folder. Every institution of the catalog needs a
//! channel; adding one is a new table here, no code.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use domain::delivery::RetryPolicy;
use serde::Deserialize;

use crate::profile::{Pattern, Profile};

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("institution `{0}` is in the catalog but has no delivery channel")]
    Missing(String),
    #[error("institution `{0}`: {1}")]
    Invalid(String, String),
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Profile(Vec<crate::profile::ProfileError>),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChannels {
    portal_id: String,
    callback_base_url: String,
    certificate: PathBuf,
    key: PathBuf,
    #[serde(default)]
    institutions: BTreeMap<String, RawChannel>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChannel {
    base_url: String,
    ca: PathBuf,
    certificate: PathBuf,
    audience: Option<String>,
    timeout_ms: Option<u64>,
    max_attempts: Option<u32>,
    base_delay_ms: Option<u64>,
    max_delay_ms: Option<u64>,
    poll_interval_ms: Option<u64>,
    #[serde(default)]
    trusts_portal_delegations: bool,
    profile: Option<PathBuf>,
    callback_deadline_ms: Option<u64>,
    no_news_after_ms: Option<u64>,
    #[serde(default)]
    offices: BTreeMap<String, RawOffice>,
    pdnd: Option<RawPdnd>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPdnd {
    token_url: String,
    client_id: String,
    purpose_id: String,
    assertion_audience: String,
    kid: String,
    ca: PathBuf,
    key: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOffice {
    base_url: String,
    ca: Option<PathBuf>,
    certificate: Option<PathBuf>,
    audience: Option<String>,
}

/// Where one office of an institution is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfficeEndpoint {
    pub base_url: String,
    pub ca_pem: String,
    pub certificate_pem: String,
    pub audience: String,
}

/// How to reach one institution.
#[derive(Debug, Clone)]
pub struct Channel {
    pub institution: String,
    pub base_url: String,
    /// The `aud` of requests to it.
    pub audience: String,
    pub ca_pem: String,
    /// The institution's certificate, to verify its callbacks.
    pub certificate_pem: String,
    pub timeout: Duration,
    pub retry: RetryPolicy,
    /// Ask the institution for news at this pace until the outcome is known; `None` when it
    /// calls back.
    pub poll_interval: Option<Duration>,
    /// Collaborators may act here on the portal's own record of a sub-delegation.
    pub trusts_portal_delegations: bool,
    /// How the institution's interface is spoken.
    pub profile: Arc<Profile>,
    /// Overrides of the profile's deadlines.
    pub callback_deadline: Option<Duration>,
    pub no_news_after: Option<Duration>,
    /// One endpoint per office, for an institution that routes by territory; empty when one
    /// address serves every office.
    pub offices: BTreeMap<String, OfficeEndpoint>,
    /// For an institution behind PDND (its profile's `security = "pdnd"`): how vouchers are had.
    pub pdnd: Option<crate::pdnd::PdndSettings>,
}

impl Channel {
    /// Collaborators may act here on the portal's own record of a sub-delegation: the channel
    /// says so, or the institution takes no notices and its profile's policy is
    /// `portal_record`.
    pub fn trusts_portal_record(&self) -> bool {
        self.trusts_portal_delegations
            || matches!(
                self.profile.delegations,
                crate::profile::DelegationNotices::NotOffered(crate::profile::DelegationPolicy::PortalRecord)
            )
    }

    /// The same channel aimed at one of its offices.
    pub fn for_office(&self, office: &str) -> Option<Self> {
        let endpoint = self.offices.get(office)?;
        Some(Self {
            base_url: endpoint.base_url.clone(),
            ca_pem: endpoint.ca_pem.clone(),
            certificate_pem: endpoint.certificate_pem.clone(),
            audience: endpoint.audience.clone(),
            offices: BTreeMap::new(),
            ..self.clone()
        })
    }

    /// A channel speaking Sportello's own interface, with today's settings.
    pub fn sportello(
        institution: &str,
        base_url: &str,
        ca_pem: &str,
        certificate_pem: &str,
    ) -> Result<Self, ChannelError> {
        Ok(Self {
            institution: institution.to_string(),
            base_url: base_url.trim_end_matches('/').to_string(),
            audience: institution.to_string(),
            ca_pem: ca_pem.to_string(),
            certificate_pem: certificate_pem.to_string(),
            timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            poll_interval: None,
            trusts_portal_delegations: false,
            profile: Arc::new(Profile::sportello().map_err(ChannelError::Profile)?),
            callback_deadline: None,
            no_news_after: None,
            offices: BTreeMap::new(),
            pdnd: None,
        })
    }

    /// When to first ask for news once a filing is taken, and how the pace backs off; `None`
    /// when nobody asks (the institution calls back, or has no status request).
    pub fn poll_pace(&self) -> Option<storage::PollPace> {
        let profile = &self.profile;
        profile.status.as_ref()?;
        let news = &profile.news;
        let first = match (self.poll_interval, profile.pattern) {
            (Some(explicit), _) => explicit,
            (None, Pattern::NonblockPullRest) => news.poll_interval?,
            (None, _) => self.callback_deadline.or(news.callback_deadline)?,
        };
        let pace = news.poll_interval.filter(|_| self.poll_interval.is_none()).unwrap_or(first);
        Some(storage::PollPace { first: pace, max: news.max_poll_interval.unwrap_or(pace).max(pace) })
    }

    /// The wait before the first status request after a filing is taken.
    pub fn first_poll_after(&self) -> Option<Duration> {
        let pace = self.poll_pace()?;
        match (self.poll_interval, self.profile.pattern) {
            (None, Pattern::NonblockPushRest | Pattern::BlockRest) => {
                self.callback_deadline.or(self.profile.news.callback_deadline).or(Some(pace.first))
            }
            _ => Some(pace.first),
        }
    }

    /// How long a delivered filing may go without news before it is marked "no news".
    pub fn no_news_after(&self) -> Option<Duration> {
        self.no_news_after.or(self.profile.news.no_news_after)
    }
}

/// All channels and the portal's own identity towards institutions.
#[derive(Debug, Clone)]
pub struct Channels {
    pub portal_id: String,
    pub callback_base_url: String,
    pub certificate_pem: String,
    pub key_pem: String,
    pub institutions: BTreeMap<String, Arc<Channel>>,
}

impl Channels {
    pub fn get(&self, institution: &str) -> Option<&Arc<Channel>> {
        self.institutions.get(institution)
    }

    /// Fails unless every institution named is configured.
    pub fn require<'a>(&self, institutions: impl IntoIterator<Item = &'a str>) -> Result<(), ChannelError> {
        for id in institutions {
            if !self.institutions.contains_key(id) {
                return Err(ChannelError::Missing(id.to_string()));
            }
        }
        Ok(())
    }

    /// The values the catalog says an institution provides (`provides`, used by filings that
    /// wait for it) that its channel's profile reads from no answer: they would never arrive.
    pub fn values_not_read(&self, catalog: &domain::catalog::Catalog) -> Vec<String> {
        let mut problems = Vec::new();
        for institution in &catalog.institutions {
            let Some(channel) = self.get(&institution.id) else { continue };
            let profile = &channel.profile;
            let maps = [
                Some(&profile.submit.answer),
                profile.status.as_ref().map(|s| &s.answer),
                profile.callback.as_ref().map(|c| &c.answer),
            ];
            for value in &institution.provides {
                if !maps.iter().flatten().any(|m| m.values.contains_key(value)) {
                    problems.push(format!(
                        "{}: the catalog says {} provides `{value}`, but no answer of the profile reads it (add it to `values` of an answer)",
                        profile.name, institution.id
                    ));
                }
            }
        }
        problems
    }

    /// Reads the channels file at `path`.
    pub fn load(path: &Path) -> Result<Self, ChannelError> {
        let file_error = |p: &Path, message: String| ChannelError::File { path: p.display().to_string(), message };
        let text = std::fs::read_to_string(path).map_err(|e| file_error(path, e.to_string()))?;
        let raw: RawChannels = toml::from_str(&text).map_err(|e| {
            ChannelError::Profile(vec![crate::profile::toml_error(&path.display().to_string(), &text, &e)])
        })?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        let read = |p: &Path| -> Result<String, ChannelError> {
            let full = if p.is_absolute() { p.to_path_buf() } else { base.join(p) };
            std::fs::read_to_string(&full).map_err(|e| file_error(&full, e.to_string()))
        };
        let mut institutions = BTreeMap::new();
        let sportello = Arc::new(Profile::sportello().map_err(ChannelError::Profile)?);
        let mut problems = Vec::new();
        for (id, c) in raw.institutions {
            if !(c.base_url.starts_with("https://") || c.base_url.starts_with("http://127.0.0.1")) {
                return Err(ChannelError::Invalid(id, "base_url must be https:// (or loopback http)".into()));
            }
            let defaults = RetryPolicy::default();
            let retry = RetryPolicy {
                max_attempts: c.max_attempts.unwrap_or(defaults.max_attempts).max(1),
                base_delay: c.base_delay_ms.map_or(defaults.base_delay, Duration::from_millis),
                max_delay: c.max_delay_ms.map_or(defaults.max_delay, Duration::from_millis),
            };
            let profile = match &c.profile {
                None => sportello.clone(),
                Some(p) => match Profile::load(&if p.is_absolute() { p.clone() } else { base.join(p) }) {
                    Ok(profile) => Arc::new(profile),
                    Err(mut errors) => {
                        problems.append(&mut errors);
                        continue;
                    }
                },
            };
            let ms = |v: Option<u64>| v.map(|ms| Duration::from_millis(ms.max(50)));
            let ca_pem = read(&c.ca)?;
            let certificate_pem = read(&c.certificate)?;
            let audience = c.audience.clone().unwrap_or_else(|| id.clone());
            let offices = offices(&id, &c, &read, (&ca_pem, &certificate_pem, &audience))?;
            let pdnd = c.pdnd.as_ref().map(|p| pdnd_settings(p, &read, &raw.key)).transpose()?;
            if profile.security == crate::profile::Security::Pdnd && pdnd.is_none() {
                return Err(ChannelError::Invalid(
                    id,
                    format!("the profile {} asks for PDND vouchers: the channel needs a [pdnd] table", profile.name),
                ));
            }
            let channel = Channel {
                pdnd,
                offices,
                profile,
                callback_deadline: ms(c.callback_deadline_ms),
                no_news_after: ms(c.no_news_after_ms),
                institution: id.clone(),
                base_url: c.base_url.trim_end_matches('/').to_string(),
                audience,
                ca_pem,
                certificate_pem,
                timeout: Duration::from_millis(c.timeout_ms.unwrap_or(10_000)),
                retry,
                poll_interval: c.poll_interval_ms.map(|ms| Duration::from_millis(ms.max(100))),
                trusts_portal_delegations: c.trusts_portal_delegations,
            };
            institutions.insert(id, Arc::new(channel));
        }
        if !problems.is_empty() {
            return Err(ChannelError::Profile(problems));
        }
        Ok(Self {
            portal_id: raw.portal_id,
            callback_base_url: raw.callback_base_url.trim_end_matches('/').to_string(),
            certificate_pem: read(&raw.certificate)?,
            key_pem: read(&raw.key)?,
            institutions,
        })
    }
}

type Read<'r> = dyn Fn(&Path) -> Result<String, ChannelError> + 'r;

/// An institution's offices with addresses of their own; what an office does not say it
/// takes from the institution's channel.
fn offices(
    id: &str,
    c: &RawChannel,
    read: &Read<'_>,
    (ca_pem, certificate_pem, audience): (&str, &str, &str),
) -> Result<BTreeMap<String, OfficeEndpoint>, ChannelError> {
    let mut offices = BTreeMap::new();
    for (office, o) in &c.offices {
        if !(o.base_url.starts_with("https://") || o.base_url.starts_with("http://127.0.0.1")) {
            return Err(ChannelError::Invalid(id.to_string(), format!("office {office}: base_url must be https://")));
        }
        let endpoint = OfficeEndpoint {
            base_url: o.base_url.trim_end_matches('/').to_string(),
            ca_pem: o.ca.as_deref().map(read).transpose()?.unwrap_or_else(|| ca_pem.to_string()),
            certificate_pem: o
                .certificate
                .as_deref()
                .map(read)
                .transpose()?
                .unwrap_or_else(|| certificate_pem.to_string()),
            audience: o.audience.clone().unwrap_or_else(|| audience.to_string()),
        };
        offices.insert(office.clone(), endpoint);
    }
    Ok(offices)
}

/// The channel's PDND client settings; the key is the portal's unless the table names one.
fn pdnd_settings(p: &RawPdnd, read: &Read<'_>, portal_key: &Path) -> Result<crate::pdnd::PdndSettings, ChannelError> {
    Ok(crate::pdnd::PdndSettings {
        token_url: p.token_url.clone(),
        client_id: p.client_id.clone(),
        purpose_id: p.purpose_id.clone(),
        assertion_audience: p.assertion_audience.clone(),
        kid: p.kid.clone(),
        ca_pem: read(&p.ca)?,
        key_pem: read(p.key.as_deref().unwrap_or(portal_key))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).expect("write");
    }

    #[test]
    fn a_channels_file_loads_with_defaults_and_relative_paths() {
        let dir = std::env::temp_dir().join(format!("sportello-channels-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        for f in ["portal.pem", "portal-key.pem", "ca.pem", "inps.pem"] {
            write(&dir, f, f);
        }
        write(
            &dir,
            "channels.toml",
            "portal_id = \"sportello\"\ncallback_base_url = \"https://portal.example/\"\ncertificate = \"portal.pem\"\nkey = \"portal-key.pem\"\n\n[institutions.inps]\nbase_url = \"https://inps.example/\"\nca = \"ca.pem\"\ncertificate = \"inps.pem\"\npoll_interval_ms = 1000\n",
        );
        let channels = Channels::load(&dir.join("channels.toml")).expect("loads");
        let inps = channels.get("inps").expect("inps");
        assert_eq!(inps.base_url, "https://inps.example");
        assert_eq!(inps.audience, "inps");
        assert_eq!(inps.certificate_pem, "inps.pem");
        assert_eq!(inps.retry, RetryPolicy::default());
        assert_eq!(inps.poll_interval, Some(Duration::from_secs(1)));
        assert_eq!(channels.callback_base_url, "https://portal.example");
        assert!(matches!(channels.require(["inps", "inail"]), Err(ChannelError::Missing(id)) if id == "inail"));

        write(&dir, "bad.toml", "portal_id = \"x\"\ncolour = \"red\"\n");
        let error = Channels::load(&dir.join("bad.toml")).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("bad.toml"), "{error}");
        write(
            &dir,
            "plain.toml",
            "portal_id = \"s\"\ncallback_base_url = \"x\"\ncertificate = \"portal.pem\"\nkey = \"portal-key.pem\"\n[institutions.inps]\nbase_url = \"http://inps.example\"\nca = \"ca.pem\"\ncertificate = \"inps.pem\"\n",
        );
        assert!(
            matches!(Channels::load(&dir.join("plain.toml")), Err(ChannelError::Invalid(..))),
            "plain http refused"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
