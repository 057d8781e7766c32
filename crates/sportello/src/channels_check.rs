//! `sportello channels check`: reads a channels file and every profile it names, reports each
//! mistake as `file:line:column: message`, and can print the exact request a filing would be
//! sent as (a dry run: signed, nothing sent).

use std::path::Path;
use std::sync::Arc;

use delivery::channels::Channels;
use delivery::client::{filing_id, FilingEnvelope, InstitutionClient};
use delivery::modi::Signer;
use domain::catalog::Catalog;

/// What a check found: a summary on success, every problem otherwise.
pub fn check(path: &Path, catalog: Option<&Catalog>) -> Result<(Channels, String), String> {
    let channels = Channels::load(path).map_err(|e| e.to_string())?;
    if let Some(catalog) = catalog {
        channels
            .require(catalog.institutions.iter().map(|i| i.id.as_str()))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let missing = channels.values_not_read(catalog);
        if !missing.is_empty() {
            return Err(missing.join("\n"));
        }
    }
    let mut summary = format!("the channels in {} are valid:\n", path.display());
    for (id, channel) in &channels.institutions {
        let profile = &channel.profile;
        let pace = channel
            .poll_pace()
            .map_or_else(|| "not asked".to_string(), |p| format!("asked from {:?} up to {:?}", p.first, p.max));
        let no_news = channel.no_news_after().map_or_else(|| "never".to_string(), |d| format!("{d:?}"));
        summary.push_str(&format!(
            "  {id}: {} ({}), {} {}{}; news: {pace}; no news after: {no_news}\n",
            profile.pattern.as_str(),
            profile.name,
            profile.submit.method,
            channel.base_url,
            if profile.callback.is_some() { ", takes callbacks" } else { "" },
        ));
        if let Some(pdnd) = &channel.pdnd {
            summary.push_str(&format!(
                "    PDND vouchers from {} (client {}, purpose {})\n",
                pdnd.token_url, pdnd.client_id, pdnd.purpose_id
            ));
        }
    }
    Ok((channels, summary))
}

/// The request a filing with `payload` would be sent to `institution` as, written out: made
/// by the same client code that sends filings, signed, and not sent.
pub fn dry_run(channels: &Channels, institution: &str, payload: serde_json::Value) -> Result<String, String> {
    let channel = channels.get(institution).ok_or_else(|| format!("no channel for `{institution}`"))?;
    let practice_id = "00000000-0000-4000-8000-000000000000";
    let envelope = FilingEnvelope {
        filing_id: filing_id(practice_id, institution, 0),
        reference: "SPT-2026-0000001".into(),
        practice_id: practice_id.into(),
        filing_kind: "dry-run".into(),
        declarant: "DPRTNT80A01H501Y".into(),
        on_behalf_of: None,
        callback_url: format!("{}/institutions/v1/{institution}/events", channels.callback_base_url),
        office: None,
        payload,
    };
    let context = delivery::worker::template_context(&envelope, institution, None);
    let reply_to =
        format!("{}/institutions/v1/{institution}/filings/{}/events", channels.callback_base_url, envelope.filing_id);
    let clock: Arc<dyn domain::Clock> = Arc::new(web::SystemClock);
    let random: Arc<dyn domain::Randomness> = Arc::new(web::SystemRandomness::default());
    let signer = Signer::new(&channels.portal_id, &channels.key_pem, &channels.certificate_pem, clock, random)
        .map_err(|e| format!("the portal's key: {e}"))?;
    let client = InstitutionClient::new(channel.clone(), &channels.certificate_pem, &channels.key_pem)
        .map_err(|e| e.to_string())?;
    // A PDND voucher is asked for only when a filing is really sent.
    let voucher = channel.pdnd.as_ref().map(|p| format!("<a PDND voucher from {}>", p.token_url));
    let request = client
        .submit_request(&envelope, &context, &reply_to, &signer, voucher.as_deref())
        .map_err(|unsent| unsent.to_string())?;
    let mut out = format!("{} {}\n", request.method(), request.url());
    for (name, value) in request.headers() {
        out.push_str(&format!("{name}: {}\n", String::from_utf8_lossy(value.as_bytes())));
    }
    out.push('\n');
    let body = request.body().and_then(reqwest::Body::as_bytes).unwrap_or_default();
    out.push_str(&String::from_utf8_lossy(body));
    out.push('\n');
    Ok(out)
}
