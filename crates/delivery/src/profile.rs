//! A channel profile: how one institution's own interface is spoken, by configuration alone.
//!
//! ```toml
//! pattern = "BLOCK_REST"            # or NONBLOCK_PULL_REST, NONBLOCK_PUSH_REST (ModI names)
//! security = "modi"                 # or "pdnd": a PDND voucher as Authorization (the channel
//!                                   #   gives [institutions.<id>.pdnd]), with the ModI
//!                                   #   integrity and audit headers
//!
//! [submit]                          # sending a filing
//! method = "POST"
//! path = "/pratiche"                # a template, like the body
//! body = "registro-imprese.json"    # a template file beside this one; .json escapes as JSON
//! content_type = "application/json"
//! schema = "domanda.xsd"            # XML bodies: the institution's XSD; a body that does not
//!                                   #   validate is a configuration error, never sent
//!
//! [submit.answer]                   # reading the answer
//! delivered = ["2xx"]               # status codes: taken (default 2xx)
//! rejected = [422]                  # refused on receipt, with reasons and fields
//! retry = [408, 429, "5xx"]         # try again later, same idempotency key
//! protocol_number = "/protocollo"   # JSON Pointers (`*` takes every element); XPath with
//!                                   #   format = "xml" (prefixes from [namespaces])
//! outcome = "/esito"
//! accepted = ["ISCRITTA"]
//! rejected_outcomes = ["RESPINTA"]
//! pending = ["IN_LAVORAZIONE"]
//! reasons = "/errori/*/descrizione"
//! fields = "/errori/*/campo"
//! values = { numero_rea = "/rea/numero" }
//!
//! [status]                          # asking where a filing stands (pull, or past a deadline)
//! path = "{{ status_url }}"         # the Location of a 202, or e.g. "/filings/{{ filing.id }}"
//! [status.answer]                   # read as above; a 303 is followed to its Location
//!
//! [callback]                        # NONBLOCK_PUSH_REST: what the institution posts back
//! filing_id = "/filing_id"          # absent: the filing is named by the X-ReplyTo address
//! message_id = "/message_id"        # absent: the SHA-256 of the body
//! [callback.answer]
//!
//! [news]                            # so that no filing waits forever
//! poll_interval_ms = 2000           # first wait between status requests, doubled up to
//! max_poll_interval_ms = 600000     #   this
//! callback_deadline_ms = 3600000    # push: no callback by then → ask (needs [status])
//! no_news_after_ms = 604800000      # nothing at all by then → "no news", resendable
//!
//! [fields]                          # the institution's names of fields → payload paths
//! "lavorazioni/descrizione" = "lavorazioni.descrizione"
//!
//! [namespaces]                      # XML answers: prefix → URI, for the XPaths
//! e = "urn:inps:esito"
//! ```
//!
//! Templates are [minijinja]; they see `filing` (id, reference, practice_id, kind, declarant,
//! on_behalf_of, callback_url, office), `payload` (the filing's data), `envelope` (Sportello's own
//! envelope, as today's institutions take it), `institution` and, for status requests,
//! `status_url`. Output escapes for the template's kind (`.json`: JSON values; `.xml`: XML).
//! A rendered JSON body that does not parse, or an XML body that is not well-formed or does not
//! follow its schema (libxml2's validator, see [`crate::xml`]), is a configuration error, never
//! sent.
//!
//! Sportello's own interface (`POST /filings` with the envelope, callbacks, `GET
//! /filings/{id}`) is the built-in profile [`Profile::sportello`].

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::Serialize;
use serde_json::Value;
use toml::Spanned;

use crate::mapping::{AnswerMap, Format, Locator, OutcomeMap, StatusSet, StatusSpec};
use crate::xml::Namespaces;
use raw::{RawAnswer, RawOperation, RawProfile};

/// The ModI interaction pattern of an institution's filing intake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Pattern {
    /// The answer carries the outcome (`BLOCK_REST`).
    BlockRest,
    /// 202 with a status resource in `Location`, polled (`NONBLOCK_PULL_REST`).
    NonblockPullRest,
    /// 202, then the institution calls back (`NONBLOCK_PUSH_REST`).
    NonblockPushRest,
}

impl Pattern {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "BLOCK_REST" => Some(Self::BlockRest),
            "NONBLOCK_PULL_REST" => Some(Self::NonblockPullRest),
            "NONBLOCK_PUSH_REST" => Some(Self::NonblockPushRest),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::BlockRest => "BLOCK_REST",
            Self::NonblockPullRest => "NONBLOCK_PULL_REST",
            Self::NonblockPushRest => "NONBLOCK_PUSH_REST",
        }
    }
}

/// How requests prove who sends them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub enum Security {
    /// ModI: an authentication JWS signed with the portal's certificate (ID_AUTH_REST_02).
    #[default]
    Modi,
    /// A PDND Interoperabilità voucher (see [`crate::pdnd`]).
    Pdnd,
}

/// A mistake in a profile, where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl std::fmt::Display for ProfileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file, self.line, self.column, self.message)
    }
}

impl std::error::Error for ProfileError {}

/// One request of a profile: how it is written and how its answer is read.
#[derive(Debug, Clone)]
pub struct Operation {
    pub method: reqwest::Method,
    path_template: String,
    body_template: Option<String>,
    pub content_type: String,
    /// The XSD the body must follow: its file name and text.
    schema: Option<(String, String)>,
    pub answer: AnswerMap,
}

/// What a callback looks like.
#[derive(Debug, Clone)]
pub struct CallbackMap {
    pub filing_id: Option<Locator>,
    pub message_id: Option<Locator>,
    pub answer: AnswerMap,
}

/// When to ask, and when to give up waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NewsPolicy {
    pub poll_interval: Option<Duration>,
    pub max_poll_interval: Option<Duration>,
    pub callback_deadline: Option<Duration>,
    pub no_news_after: Option<Duration>,
}

/// A request ready to sign and send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedRequest {
    pub method: reqwest::Method,
    /// Starts with `/` (under the channel's address) or is an absolute `https://` address.
    pub target: String,
    pub content_type: String,
    pub body: Vec<u8>,
}

/// An institution's interface.
#[derive(Debug, Clone)]
pub struct Profile {
    /// The file it came from, or `sportello` for the built-in one.
    pub name: String,
    pub pattern: Pattern,
    pub security: Security,
    pub submit: Operation,
    pub status: Option<Operation>,
    pub callback: Option<CallbackMap>,
    pub news: NewsPolicy,
    /// The institution's names for fields → the filing's payload paths.
    pub field_names: BTreeMap<String, String>,
    /// Who may file there (see [`services`]).
    pub authorisations: Lookup,
    /// Sub-delegation notices (see [`services`]).
    pub delegations: DelegationNotices,
    templates: Environment<'static>,
}

const SPORTELLO_PROFILE: &str = include_str!("../profiles/sportello.toml");
const SPORTELLO_ENVELOPE: &str = include_str!("../profiles/sportello-envelope.json");
const SPORTELLO_DELEGATION: &str = include_str!("../profiles/sportello-delegation.json");

impl Profile {
    /// Sportello's own interface, as the first institutions spoke it (built in; a unit test
    /// keeps it compiling).
    pub fn sportello() -> Result<Self, Vec<ProfileError>> {
        let templates = BTreeMap::from([("sportello-envelope.json".to_string(), SPORTELLO_ENVELOPE.to_string())]);
        Self::from_text("sportello", SPORTELLO_PROFILE, &templates)
    }

    /// The request that asks who may file there, unless the institution offers none.
    pub fn render_lookup(&self, context: &Value) -> Option<Result<RenderedRequest, String>> {
        match &self.authorisations {
            Lookup::Asked(lookup) => Some(self.render(&lookup.operation, context)),
            Lookup::NotOffered(_) => None,
        }
    }

    /// Reads a profile file and the templates it names (relative to its folder).
    pub fn load(path: &Path) -> Result<Self, Vec<ProfileError>> {
        let name = path.display().to_string();
        let at_file = |message: String| vec![ProfileError { file: name.clone(), line: 1, column: 1, message }];
        let text = std::fs::read_to_string(path).map_err(|e| at_file(format!("cannot read the file: {e}")))?;
        let raw: RawProfile = toml::from_str(&text).map_err(|e| vec![toml_error(&name, &text, &e)])?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        let mut templates = BTreeMap::new();
        let mut errors = Vec::new();
        let delegations = raw.delegations.as_ref().map(|d| d.get_ref());
        let ops = [Some(&raw.submit), raw.status.as_ref()].into_iter().flatten();
        for op in ops.chain(delegations.into_iter().flat_map(|d| d.operations())) {
            for file in [&op.body, &op.schema].into_iter().flatten() {
                match std::fs::read_to_string(base.join(file.get_ref())) {
                    Ok(t) => {
                        templates.insert(file.get_ref().clone(), t);
                    }
                    Err(e) => errors.push(at(&name, &text, file.span(), format!("cannot read the file: {e}"))),
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let shown: BTreeMap<String, String> =
            templates.keys().map(|k| (k.clone(), base.join(k).display().to_string())).collect();
        Self::compile(&name, &text, raw, templates, &shown)
    }

    /// A profile from its text and its templates' texts by name (for the built-in one and tests).
    pub fn from_text(name: &str, text: &str, templates: &BTreeMap<String, String>) -> Result<Self, Vec<ProfileError>> {
        let raw: RawProfile = toml::from_str(text).map_err(|e| vec![toml_error(name, text, &e)])?;
        let shown = templates.keys().map(|k| (k.clone(), k.clone())).collect();
        Self::compile(name, text, raw, templates.clone(), &shown)
    }

    fn compile(
        name: &str,
        text: &str,
        raw: RawProfile,
        template_texts: BTreeMap<String, String>,
        shown: &BTreeMap<String, String>,
    ) -> Result<Self, Vec<ProfileError>> {
        let mut errors = Vec::new();
        let (mut env, schemas) = load_files(template_texts, shown, &mut errors);
        let namespaces = raw.namespaces.clone();
        let mut ctx =
            Compiler { name, text, errors: &mut errors, env: &mut env, namespaces: &namespaces, schemas: &schemas };
        let pattern = Pattern::parse(raw.pattern.get_ref()).unwrap_or_else(|| {
            ctx.error(
                raw.pattern.span(),
                format!(
                    "pattern `{}`: expected BLOCK_REST, NONBLOCK_PULL_REST or NONBLOCK_PUSH_REST",
                    raw.pattern.get_ref()
                ),
            );
            Pattern::NonblockPushRest
        });
        let security = match raw.security.as_ref().map(|s| (s.get_ref().as_str(), s.span())) {
            None | Some(("modi", _)) => Security::Modi,
            Some(("pdnd", _)) => Security::Pdnd,
            Some((other, span)) => {
                ctx.error(span, format!("security `{other}`: expected \"modi\" or \"pdnd\""));
                Security::Modi
            }
        };
        let submit = ctx.operation("submit", &raw.submit);
        let status = raw.status.as_ref().map(|s| ctx.operation("status", s));
        let callback = raw.callback.as_ref().map(|c| {
            let mut answer = ctx.answer(&c.answer);
            let format = answer.format;
            let filing_id = c.filing_id.as_ref().and_then(|p| ctx.locator(format, p));
            let message_id = c.message_id.as_ref().and_then(|p| ctx.locator(format, p));
            answer.extra.extend(filing_id.iter().chain(&message_id).cloned());
            CallbackMap { filing_id, message_id, answer }
        });
        let ms = |v: Option<u64>| v.map(|ms| Duration::from_millis(ms.max(50)));
        let news = NewsPolicy {
            poll_interval: ms(raw.news.poll_interval_ms),
            max_poll_interval: ms(raw.news.max_poll_interval_ms),
            callback_deadline: ms(raw.news.callback_deadline_ms),
            no_news_after: ms(raw.news.no_news_after_ms),
        };
        let needs_status = match pattern {
            Pattern::NonblockPullRest => Some("NONBLOCK_PULL_REST needs a [status] request"),
            _ if news.callback_deadline.is_some() => Some("callback_deadline_ms needs a [status] request to ask with"),
            _ => None,
        };
        if let (Some(message), None) = (needs_status, &status) {
            ctx.error(raw.pattern.span(), message.to_string());
        }
        if pattern == Pattern::NonblockPushRest && callback.is_none() {
            ctx.error(raw.pattern.span(), "NONBLOCK_PUSH_REST needs a [callback] section".to_string());
        }
        if pattern == Pattern::NonblockPullRest && news.poll_interval.is_none() {
            ctx.error(raw.pattern.span(), "NONBLOCK_PULL_REST needs news.poll_interval_ms".to_string());
        }
        let (authorisations, delegations) = ctx.services(&raw);
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            name: name.to_string(),
            pattern,
            security,
            submit,
            status,
            callback,
            news,
            field_names: raw.fields,
            authorisations,
            delegations,
            templates: env,
        })
    }

    /// The request that sends a filing.
    pub fn render_submit(&self, context: &Value) -> Result<RenderedRequest, String> {
        self.render(&self.submit, context)
    }

    /// The request that asks where a filing stands, if the profile has one.
    pub fn render_status(&self, context: &Value) -> Option<Result<RenderedRequest, String>> {
        self.status.as_ref().map(|op| self.render(op, context))
    }

    /// The request `op` of this profile makes in `context`.
    pub fn render(&self, op: &Operation, context: &Value) -> Result<RenderedRequest, String> {
        let run = |name: &str| -> Result<String, String> {
            let template = self.templates.get_template(name).map_err(|e| format!("template {name}: {e}"))?;
            template.render(context).map_err(|e| format!("template {name}: {e:#}"))
        };
        let target = run(&op.path_template)?.trim().to_string();
        if !(target.starts_with('/') || target.starts_with("https://")) {
            return Err(format!("the path `{target}` is neither `/…` nor an https:// address"));
        }
        let body = match &op.body_template {
            Some(name) => run(name)?.into_bytes(),
            None => Vec::new(),
        };
        if !body.is_empty() && op.content_type.contains("json") {
            serde_json::from_slice::<Value>(&body)
                .map_err(|e| format!("the body made by {} is not JSON ({e}); nothing was sent", self.name))?;
        }
        if op.content_type.contains("xml") {
            let checked = match &op.schema {
                Some((file, xsd)) => {
                    crate::xml::validate(xsd, &body).map_err(|p| (format!("does not follow {file}"), p))
                }
                None => crate::xml::select(&String::from_utf8_lossy(&body), &Namespaces::new(), &[])
                    .map(drop)
                    .map_err(|p| ("is not well-formed XML".to_string(), vec![p])),
            };
            if let Err((what, problems)) = checked {
                return Err(format!(
                    "the body made by {} {what}: {}; nothing was sent",
                    self.name,
                    problems.join("; ")
                ));
            }
        }
        Ok(RenderedRequest { method: op.method.clone(), target, content_type: op.content_type.clone(), body })
    }

    /// The payload path an institution's own field name stands for.
    pub fn payload_path(&self, institution_name: &str) -> String {
        self.field_names.get(institution_name).cloned().unwrap_or_else(|| institution_name.to_string())
    }
}

impl Compiler<'_> {
    /// The look-up and the notices the profile declares, else Sportello's own.
    fn services(&mut self, raw: &RawProfile) -> (Lookup, DelegationNotices) {
        let built_in = match (&raw.authorisations, &raw.delegations) {
            (Some(_), Some(_)) => None,
            _ => toml::from_str::<RawProfile>(SPORTELLO_PROFILE).ok(),
        };
        let (mut default_lookup, mut default_notices) = (None, None);
        if let Some(b) = &built_in {
            let mut errors = Vec::new();
            let mut sportello = Compiler {
                name: "sportello",
                text: SPORTELLO_PROFILE,
                errors: &mut errors,
                env: &mut *self.env,
                namespaces: self.namespaces,
                schemas: self.schemas,
            };
            default_lookup = b.authorisations.as_ref().map(|l| sportello.lookup(l.get_ref(), l.span()));
            default_notices = b.delegations.as_ref().map(|d| sportello.delegations(d.get_ref(), d.span()));
            self.errors.extend(errors);
        }
        let lookup = match &raw.authorisations {
            Some(l) => self.lookup(l.get_ref(), l.span()),
            None => {
                default_lookup.unwrap_or(Lookup::NotOffered(domain::authorisation::NotOfferedPolicy::OwnBusinessOnly))
            }
        };
        let notices = match &raw.delegations {
            Some(d) => self.delegations(d.get_ref(), d.span()),
            None => default_notices.unwrap_or(DelegationNotices::NotOffered(DelegationPolicy::GrantorOnly)),
        };
        (lookup, notices)
    }
}

struct Compiler<'a> {
    name: &'a str,
    text: &'a str,
    errors: &'a mut Vec<ProfileError>,
    env: &'a mut Environment<'static>,
    namespaces: &'a Namespaces,
    schemas: &'a BTreeMap<String, String>,
}

impl Compiler<'_> {
    fn error(&mut self, span: std::ops::Range<usize>, message: String) {
        self.errors.push(at(self.name, self.text, span, message));
    }

    fn locator(&mut self, format: Format, p: &Spanned<String>) -> Option<Locator> {
        Locator::parse(format, p.get_ref()).map_err(|m| self.error(p.span(), m)).ok()
    }

    fn statuses(&mut self, specs: &Option<Spanned<Vec<StatusSpec>>>, default: StatusSet) -> StatusSet {
        let Some(specs) = specs else { return default };
        let mut ranges = Vec::new();
        for spec in specs.get_ref() {
            match StatusSet::parse_spec(spec) {
                Ok(r) => ranges.push(r),
                Err(m) => self.error(specs.span(), m),
            }
        }
        StatusSet::from_ranges(ranges)
    }

    fn answer(&mut self, raw: &RawAnswer) -> AnswerMap {
        let defaults = AnswerMap::default();
        let format = match raw.format.as_ref().map(|f| (f.get_ref().as_str(), f.span())) {
            None | Some(("json", _)) => Format::Json,
            Some(("xml", _)) => Format::Xml,
            Some((other, span)) => {
                self.error(span, format!("format `{other}`: expected \"json\" or \"xml\""));
                Format::Json
            }
        };
        let (delivered, rejected, retry) = (
            self.statuses(&raw.delivered, defaults.delivered),
            self.statuses(&raw.rejected, defaults.rejected),
            self.statuses(&raw.retry, defaults.retry),
        );
        AnswerMap {
            format,
            namespaces: if format == Format::Xml { self.namespaces.clone() } else { Namespaces::new() },
            extra: Vec::new(),
            delivered,
            rejected,
            retry,
            protocol_number: raw.protocol_number.as_ref().and_then(|p| self.locator(format, p)),
            outcome: raw.outcome.as_ref().and_then(|p| self.locator(format, p)).map(|at| OutcomeMap {
                at,
                accepted: raw.accepted.clone(),
                rejected: raw.rejected_outcomes.clone(),
                pending: raw.pending.clone(),
            }),
            reasons: raw.reasons.as_ref().and_then(|p| self.locator(format, p)),
            fields: raw.fields.as_ref().and_then(|p| self.locator(format, p)),
            values: raw.values.iter().filter_map(|(k, p)| Some((k.clone(), self.locator(format, p)?))).collect(),
        }
    }

    fn operation(&mut self, which: &str, raw: &RawOperation) -> Operation {
        let method = match &raw.method {
            None => reqwest::Method::POST,
            Some(m) => match m.get_ref().to_ascii_uppercase().as_str() {
                "GET" => reqwest::Method::GET,
                "POST" => reqwest::Method::POST,
                "PUT" => reqwest::Method::PUT,
                "DELETE" => reqwest::Method::DELETE,
                other => {
                    self.error(m.span(), format!("method `{other}`: expected GET, POST, PUT or DELETE"));
                    reqwest::Method::POST
                }
            },
        };
        let method = match (&raw.method, which) {
            (None, "status" | "authorisations") => reqwest::Method::GET,
            (None, "delegations.revoke") => reqwest::Method::DELETE,
            _ => method,
        };
        let path_template = format!("{which}.path");
        if let Err(e) = self.env.add_template_owned(path_template.clone(), raw.path.get_ref().clone()) {
            self.error(raw.path.span(), format!("path template: {}", e.detail().unwrap_or("syntax error")));
        }
        if let Some(body) = &raw.body {
            if self.env.get_template(body.get_ref()).is_err()
                && !self.errors.iter().any(|e| e.file.ends_with(body.get_ref()))
            {
                self.error(body.span(), format!("template `{}` is not loaded", body.get_ref()));
            }
        }
        let schema = raw.schema.as_ref().and_then(|file| {
            let found = self.schemas.get(file.get_ref()).map(|xsd| (file.get_ref().clone(), xsd.clone()));
            if found.is_none() {
                self.error(file.span(), format!("schema `{}` is not loaded", file.get_ref()));
            }
            found
        });
        Operation {
            method,
            path_template,
            schema,
            body_template: raw.body.as_ref().map(|b| b.get_ref().clone()),
            content_type: raw.content_type.clone().unwrap_or_else(|| "application/json".to_string()),
            answer: self.answer(&raw.answer),
        }
    }
}

/// The template engine with the profile's templates, and its XML schemas (checked here), from
/// the files' texts by name; each unusable file is an error naming it.
fn load_files(
    texts: BTreeMap<String, String>,
    shown: &BTreeMap<String, String>,
    errors: &mut Vec<ProfileError>,
) -> (Environment<'static>, BTreeMap<String, String>) {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    env.set_auto_escape_callback(|template| {
        if template.ends_with(".json") {
            AutoEscape::Json
        } else if template.ends_with(".xml") || template.ends_with(".html") {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    let mut schemas = BTreeMap::new();
    let mut texts = texts;
    // The built-in profile's sections stand in for those a profile leaves out.
    texts.entry("sportello-delegation.json".to_string()).or_insert_with(|| SPORTELLO_DELEGATION.to_string());
    for (file, source) in texts {
        let file_shown = shown.get(&file).cloned().unwrap_or_else(|| file.clone());
        if file.ends_with(".xsd") {
            if let Err(problems) = crate::xml::check_schema(&source) {
                let message = format!("the XML schema cannot be used: {}", problems.join("; "));
                errors.push(ProfileError { file: file_shown, line: 1, column: 1, message });
            }
            schemas.insert(file, source);
            continue;
        }
        if let Err(e) = env.add_template_owned(file.clone(), source) {
            errors.push(ProfileError {
                file: file_shown,
                line: e.line().unwrap_or(1),
                column: 1,
                message: format!("template: {}", e.detail().unwrap_or("syntax error")),
            });
        }
    }
    (env, schemas)
}

fn at(file: &str, text: &str, span: std::ops::Range<usize>, message: String) -> ProfileError {
    let (line, column) = domain::line_column(text, span.start);
    ProfileError { file: file.to_string(), line, column, message }
}

/// A TOML mistake as `file:line:column: message`.
pub fn toml_error(file: &str, text: &str, e: &toml::de::Error) -> ProfileError {
    let span = e.span().unwrap_or(0..0);
    at(file, text, span, e.message().to_string())
}

mod raw;
mod services;

pub use services::{AuthorisationLookup, DelegationNotices, DelegationPolicy, Lookup};

#[cfg(test)]
mod tests;
