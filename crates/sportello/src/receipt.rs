//! `sportello receipt verify FILE`: checks, offline, a practices export (the desk's "Esporta")
//! — every institution's signed answer kept in the timelines against the institution's
//! certificates, and each filing's payload and the practice's data against their digests.

use std::collections::BTreeMap;

use delivery::evidence::Evidence;
use serde_json::Value;

/// Where the institutions' certificates come from: institution id → PEM texts (an institution
/// with offices may sign with any of them).
pub type Certificates = BTreeMap<String, Vec<String>>;

/// The certificates of a channels file: each institution's and its offices'.
pub fn certificates_of_channels(channels: &delivery::channels::Channels) -> Certificates {
    channels
        .institutions
        .iter()
        .map(|(id, c)| {
            let mut pems = vec![c.certificate_pem.clone()];
            pems.extend(c.offices.values().map(|o| o.certificate_pem.clone()));
            (id.clone(), pems)
        })
        .collect()
}

/// The certificates in a folder, as `<institution>.pem` (the demo's `sportello-data/pki`).
pub fn certificates_in(dir: &std::path::Path, institutions: &[&str]) -> Certificates {
    institutions
        .iter()
        .filter_map(|id| Some((id.to_string(), vec![std::fs::read_to_string(dir.join(format!("{id}.pem"))).ok()?])))
        .collect()
}

/// The institutions an export names.
pub fn institutions_named(export: &Value) -> Vec<String> {
    let mut ids: Vec<String> = practices(export)
        .flat_map(|p| p["timeline"].as_array().into_iter().flatten())
        .filter_map(|e| e["institution"].as_str().map(str::to_string))
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

fn practices(export: &Value) -> impl Iterator<Item = &Value> {
    export["practices"].as_array().into_iter().flatten()
}

/// The report of a verification, and whether everything held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub lines: Vec<String>,
    pub verified: usize,
    pub failed: usize,
}

/// Checks an export; `Err` when the file is not an export at all.
pub fn verify(text: &str, certificates: &Certificates) -> Result<Report, String> {
    let export: Value = serde_json::from_str(text).map_err(|e| format!("not a Sportello export (JSON): {e}"))?;
    if export["practices"].as_array().is_none() {
        return Err("not a Sportello export: no `practices`".into());
    }
    let mut report = Report { lines: Vec::new(), verified: 0, failed: 0 };
    for practice in practices(&export) {
        let reference = practice["reference"].as_str().unwrap_or("(bozza)");
        check_digests(reference, practice, &mut report);
        for entry in practice["timeline"].as_array().into_iter().flatten() {
            let Some(kept) = entry["detail"].get("evidence") else { continue };
            let institution = entry["institution"].as_str().unwrap_or_default();
            let what = format!(
                "{reference} {institution} {} {}",
                entry["kind"].as_str().unwrap_or(""),
                entry["at"].as_str().unwrap_or("")
            );
            let outcome = serde_json::from_value::<Evidence>(kept.clone())
                .map_err(|e| format!("unreadable evidence: {e}"))
                .and_then(|evidence| verify_one(&evidence, certificates.get(institution)));
            match outcome {
                Ok(signer) => {
                    report.verified += 1;
                    report.lines.push(format!("ok      {what}: signed by {signer}"));
                }
                Err(why) => {
                    report.failed += 1;
                    report.lines.push(format!("FAILED  {what}: {why}"));
                }
            }
        }
    }
    if report.verified + report.failed == 0 {
        report.failed += 1;
        report.lines.push("FAILED  the export holds no signed answer to verify".into());
    }
    Ok(report)
}

fn verify_one(evidence: &Evidence, pems: Option<&Vec<String>>) -> Result<String, String> {
    let pems = pems.filter(|p| !p.is_empty()).ok_or("no certificate configured for this institution")?;
    let mut last = String::new();
    for pem in pems {
        match evidence.verify(pem) {
            Ok(signer) => return Ok(signer),
            Err(why) => last = why,
        }
    }
    Err(last)
}

fn check_digests(reference: &str, practice: &Value, report: &mut Report) {
    let mut check = |what: String, value: &Value, digest: &Value| {
        let Some(expected) = digest.as_str() else { return };
        let actual = web::sha256_hex(value.to_string().as_bytes());
        if actual == expected {
            report.verified += 1;
            report.lines.push(format!("ok      {reference} {what}: digest {expected}"));
        } else {
            report.failed += 1;
            report.lines.push(format!("FAILED  {reference} {what}: the content does not match its digest"));
        }
    };
    check("data".into(), &practice["data"], &practice["data_sha256"]);
    for d in practice["deliveries"].as_array().into_iter().flatten() {
        let what = format!("{} payload", d["institution"].as_str().unwrap_or_default());
        check(what, &d["payload"], &d["payload_sha256"]);
    }
}
