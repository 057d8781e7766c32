//! The `sportello` binary as a user runs it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn binary() -> &'static str {
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
