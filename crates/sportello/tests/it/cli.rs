//! The `sportello` binary as a user runs it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_sportello")
}

fn shipped_catalog() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../catalog")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

#[test]
fn catalog_check_accepts_the_shipped_catalog() {
    let out = Command::new(binary()).args(["catalog", "check"]).arg(shipped_catalog()).output().expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("5 services"));
}

#[test]
fn catalog_check_reports_file_line_and_reason() {
    let dir = tempfile::tempdir().expect("temp");
    copy_dir(&shipped_catalog(), dir.path());
    let inail = dir.path().join("institutions/inail.toml");
    let text = std::fs::read_to_string(&inail).expect("read");
    let broken = text.replacen(
        "\"lavorazioni.addetti\" = \"staff.employees\"",
        "\"lavorazioni.addetti\" = \"staff.employes\"",
        1,
    );
    assert_ne!(text, broken);
    std::fs::write(&inail, &broken).expect("write");
    let line = broken.lines().position(|l| l.contains("staff.employes")).map(|i| i + 1).expect("line");
    // A second, unrelated mistake in another file is reported in the same run.
    let services = dir.path().join("services/services.toml");
    let text = std::fs::read_to_string(&services).expect("read");
    std::fs::write(&services, text.replacen("life_event = \"avvio\"", "life_event = \"nascita\"", 1)).expect("write");

    let out = Command::new(binary()).args(["catalog", "check"]).arg(dir.path()).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("institutions/inail.toml:{line}:")), "{stderr}");
    assert!(stderr.contains("payload source `staff.employes`"), "{stderr}");
    assert!(stderr.contains("unknown life event `nascita`"), "{stderr}");
}

/// The README's demo command: first run creates the data folder and serves; Ctrl-C stops it
/// cleanly; a second run reuses the same cards.
#[test]
fn demo_creates_its_data_once_and_stops_on_ctrl_c() {
    let dir = tempfile::tempdir().expect("temp");
    let data = dir.path().join("data");
    let run = || {
        let mut child = Command::new(binary())
            .args(["demo", "--port", "0", "--data-dir"])
            .arg(&data)
            .arg("--catalog")
            .arg(shipped_catalog())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn demo");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut banner = String::new();
        while Instant::now() < deadline {
            let Some(Ok(line)) = lines.next() else { break };
            banner.push_str(&line);
            banner.push('\n');
            if line.contains("Stop with Ctrl-C") {
                break;
            }
        }
        // The reader stays alive with the child: closing the pipe early would make the
        // demo's next write fail.
        (child, banner, lines)
    };

    let (mut child, banner, _output) = run();
    assert!(banner.contains("Sportello demo: https://localhost:"), "{banner}");
    assert!(banner.contains("curl --cacert"), "{banner}");
    for file in ["sportello.db", "pki/ca.pem", "cards/diprova.p12", "cards/diprova.pem", "cards/bianco.p12"] {
        assert!(data.join(file).exists(), "{file} missing");
    }
    let password = std::fs::read_to_string(data.join("cards/password.txt")).expect("password");
    assert!(banner.contains(password.trim()), "the banner prints the card password");
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill");
    assert!(status.success());
    let exit = child.wait().expect("wait");
    assert!(exit.success(), "Ctrl-C stops cleanly: {exit:?}");

    let ca_before = std::fs::read(data.join("pki/ca.pem")).expect("ca");
    let (mut child, banner, _output) = run();
    assert!(banner.contains(password.trim()), "same cards on the second run");
    assert_eq!(std::fs::read(data.join("pki/ca.pem")).expect("ca"), ca_before);
    let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    assert!(child.wait().expect("wait").success());
}

/// A channels file reaching the repository's profiles, with test certificates, in `dir`.
fn channels_file(dir: &Path, inail_profile: &Path) -> PathBuf {
    channels_file_with(dir, inail_profile, "")
}

/// The same, with `inps_lines` added to INPS's table (a profile, say).
fn channels_file_with(dir: &Path, inail_profile: &Path, inps_lines: &str) -> PathBuf {
    let pki = identity::test_pki::TestPki::generate("Channels check CA").expect("pki");
    let portal = pki.client("sportello").expect("portal");
    std::fs::write(dir.join("ca.pem"), &pki.ca.cert_pem).expect("ca");
    std::fs::write(dir.join("portal.pem"), &portal.cert_pem).expect("cert");
    std::fs::write(dir.join("portal-key.pem"), &portal.key_pem).expect("key");
    let profiles = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../channels");
    let text = format!(
        "portal_id = \"sportello\"\ncallback_base_url = \"https://portal.example\"\ncertificate = \"portal.pem\"\nkey = \"portal-key.pem\"\n\n\
         [institutions.inps]\n{inps_lines}base_url = \"https://inps.example\"\nca = \"ca.pem\"\ncertificate = \"ca.pem\"\n\n\
         [institutions.inail]\nprofile = \"{}\"\nbase_url = \"https://inail.example\"\nca = \"ca.pem\"\ncertificate = \"ca.pem\"\n\n\
         [institutions.registro-imprese]\nprofile = \"{}\"\nbase_url = \"https://ri.example\"\nca = \"ca.pem\"\ncertificate = \"ca.pem\"\n",
        inail_profile.display(),
        profiles.join("registro-imprese.toml").display()
    );
    let path = dir.join("channels.toml");
    std::fs::write(&path, text).expect("channels");
    path
}

#[test]
fn channels_check_describes_each_channel_and_dry_runs_a_filing() {
    let dir = tempfile::tempdir().expect("temp");
    let inail = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../channels/inail.toml");
    let file = channels_file(dir.path(), &inail);
    let sample = dir.path().join("sample.json");
    std::fs::write(&sample, r#"{"impresa": {"denominazione": "Bar \"Centrale\""}, "sede": {"provincia": "MI"}}"#)
        .expect("sample");
    let out = Command::new(binary())
        .args(["channels", "check"])
        .arg(&file)
        .arg("--catalog")
        .arg(shipped_catalog())
        .args(["--dry-run", "registro-imprese", "--sample"])
        .arg(&sample)
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}{stdout}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("inail: NONBLOCK_PULL_REST"), "{stdout}");
    assert!(stdout.contains("inps: NONBLOCK_PUSH_REST (sportello)"), "{stdout}");
    assert!(stdout.contains("registro-imprese: BLOCK_REST"), "{stdout}");
    assert!(stdout.contains("POST https://ri.example/pratiche"), "{stdout}");
    assert!(stdout.contains("agid-jwt-signature: "), "signed: {stdout}");
    let body = stdout.rsplit("\n\n").next().expect("body");
    let body: serde_json::Value = serde_json::from_str(body.trim()).expect("the body is JSON");
    assert_eq!(body["dati"]["impresa"]["denominazione"], "Bar \"Centrale\"");
    assert_eq!(body["pratica"]["identificativo"], "00000000-0000-4000-8000-000000000000.registro-imprese.0");
}

#[test]
fn channels_check_refuses_a_profile_that_never_reads_a_value_the_catalog_promises() {
    let dir = tempfile::tempdir().expect("temp");
    let profiles = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../channels");
    let file = channels_file(dir.path(), &profiles.join("inail.toml"));
    // The Registro Imprese left on Sportello's own interface: nothing reads its REA number.
    let text = std::fs::read_to_string(&file).expect("channels");
    let ri_profile = format!("profile = \"{}\"\n", profiles.join("registro-imprese.toml").display());
    assert!(text.contains(&ri_profile));
    std::fs::write(&file, text.replace(&ri_profile, "")).expect("write");
    let out =
        Command::new(binary()).args(["channels", "check"]).arg(&file).arg("--catalog").arg(shipped_catalog()).output();
    let out = out.expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "refused");
    assert!(stderr.contains("registro-imprese provides `numero_rea`") && stderr.contains("ufficio_rea"), "{stderr}");
}

#[test]
fn channels_check_dry_runs_an_xml_filing_against_its_schema() {
    let dir = tempfile::tempdir().expect("temp");
    let profiles = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../channels");
    let inps = format!("profile = \"{}\"\n", profiles.join("inps.toml").display());
    let without_pdnd = channels_file_with(dir.path(), &profiles.join("inail.toml"), &inps);
    let out = Command::new(binary()).args(["channels", "check"]).arg(&without_pdnd).output().expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("needs a [pdnd] table"), "{stderr}");
    let pdnd = "[institutions.inps.pdnd]\ntoken_url = \"https://pdnd.example/token.oauth2\"\nclient_id = \"c1\"\n\
                purpose_id = \"p1\"\nassertion_audience = \"pdnd.example/client-assertion\"\nkid = \"k1\"\nca = \"ca.pem\"\n";
    let file = channels_file_with(dir.path(), &profiles.join("inail.toml"), &inps);
    let text = std::fs::read_to_string(&file)
        .expect("channels")
        .replace("[institutions.inail]", &format!("{pdnd}\n[institutions.inail]"));
    std::fs::write(&file, text).expect("channels");
    let dry_run = |sample: &str| {
        let path = dir.path().join("sample.json");
        std::fs::write(&path, sample).expect("sample");
        Command::new(binary())
            .args(["channels", "check"])
            .arg(&file)
            .args(["--dry-run", "inps", "--sample"])
            .arg(&path)
            .output()
            .expect("run")
    };
    let out = dry_run(r#"{"azienda": {"denominazione": "Bar <Centrale> & C.", "codice_fiscale": "RSSMRA45C12F205C"}}"#);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}{stdout}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("inps: NONBLOCK_PUSH_REST"), "{stdout}");
    assert!(stdout.contains("POST https://inps.example/domande"), "{stdout}");
    assert!(stdout.contains("content-type: application/xml"), "{stdout}");
    assert!(
        stdout.contains("PDND vouchers from https://pdnd.example/token.oauth2 (client c1, purpose p1)"),
        "{stdout}"
    );
    assert!(stdout.contains("authorization: Bearer <a PDND voucher from"), "{stdout}");
    assert!(stdout.contains("agid-jwt-signature: "), "integrity signed as ever: {stdout}");
    assert!(stdout.contains("<denominazione>Bar &lt;Centrale&gt; &amp; C.</denominazione>"), "escaped: {stdout}");
    // A payload the schema refuses (a codice fiscale of the wrong shape): shown, never sent.
    let out = dry_run(r#"{"azienda": {"denominazione": "Bar", "codice_fiscale": "rss"}}"#);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "refused: {}", String::from_utf8_lossy(&out.stdout));
    assert!(stderr.contains("does not follow inps.xsd") && stderr.contains("codice_fiscale"), "{stderr}");
}

#[test]
fn channels_check_reports_profile_mistakes_with_file_line_and_column() {
    let dir = tempfile::tempdir().expect("temp");
    let shipped = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../channels");
    let broken = dir.path().join("inail.toml");
    let text = std::fs::read_to_string(shipped.join("inail.toml")).expect("profile");
    std::fs::write(&broken, text.replace("outcome = \"/esito\"", "outcome = \"esito\"")).expect("write");
    for template in ["inail.json", "inail-delega.json"] {
        std::fs::copy(shipped.join(template), dir.path().join(template)).expect("template");
    }
    let file = channels_file(dir.path(), &broken);
    let out = Command::new(binary()).args(["channels", "check"]).arg(&file).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = text.lines().position(|l| l.starts_with("outcome = ")).expect("line") + 1;
    let expected = format!("{}:{line}:11: `esito` is not a JSON Pointer", broken.display());
    assert!(stderr.contains(&expected), "{stderr}\nexpected {expected}");
}

#[test]
fn catalog_check_reports_answers_not_provided_and_circles_of_waits() {
    let dir = tempfile::tempdir().expect("temp");
    copy_dir(&shipped_catalog(), dir.path());
    let inps = dir.path().join("institutions/inps.toml");
    let text = std::fs::read_to_string(&inps).expect("inps");
    std::fs::write(&inps, text.replace("\"registro-imprese.numero_rea\"", "\"registro-imprese.numero_ditta\""))
        .expect("write");
    let ri = dir.path().join("institutions/registro-imprese.toml");
    let text = std::fs::read_to_string(&ri).expect("ri");
    let looped = text.replacen(
        "[filings.payload]\n",
        "[filings.answers]\n\"impresa.posizione_inps\" = \"inps.protocol_number\"\n\n[filings.payload]\n",
        1,
    );
    std::fs::write(&ri, looped).expect("write");
    let out = Command::new(binary()).args(["catalog", "check"]).arg(dir.path()).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "`registro-imprese` does not provide `numero_ditta` (it provides protocol_number, numero_rea, ufficio_rea)"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("`registro-imprese` waits, through others, for itself"), "{stderr}");
    assert!(stderr.contains("services.toml:"), "with file, line and column: {stderr}");
}
