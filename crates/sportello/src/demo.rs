//! The demo's data folder: a SQLite database and a throw-away PKI with test smart cards,
//! created on first run and reused afterwards.

use std::path::{Path, PathBuf};

use anyhow::Context;
use domain::Randomness;
use identity::test_pki::{CardSpec, TestPki};
use web::tls::TlsMaterial;

/// A test smart card the demo issues.
#[derive(Debug, Clone, Copy)]
pub struct DemoCard {
    /// File name stem under `cards/`.
    pub slug: &'static str,
    pub given_name: &'static str,
    pub surname: &'static str,
    pub tax_code: &'static str,
    pub role: &'static str,
    pub kind: CardKind,
}

/// What is wrong with a demo card, if anything: the portal must refuse all but `Valid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardKind {
    Valid,
    Expired,
    /// Listed in the demo CRL.
    Revoked,
    /// Issued by a certifier the portal does not trust.
    UntrustedIssuer,
    /// Without the CNS certificate policy.
    NoCnsPolicy,
}

/// The cards of the demo.
pub const DEMO_CARDS: [DemoCard; 7] = [
    DemoCard {
        slug: "diprova",
        given_name: "Utente",
        surname: "DiProva",
        tax_code: "DPRTNT80A01H501Y",
        role: "titolare d'impresa / business owner",
        kind: CardKind::Valid,
    },
    DemoCard {
        slug: "bianco",
        given_name: "Stefania",
        surname: "Bianco",
        tax_code: "BNCSFN85T58G702W",
        role: "commercialista / accountant",
        kind: CardKind::Valid,
    },
    DemoCard {
        slug: "verdi",
        given_name: "Giuseppe",
        surname: "Verdi",
        tax_code: "VRDGPP80A01H501U",
        role: "abilitato solo presso l'INPS / authorised at INPS only",
        kind: CardKind::Valid,
    },
    DemoCard {
        slug: "scaduta",
        given_name: "Elena",
        surname: "Neri",
        tax_code: "NRELNE75B41F205A",
        role: "carta scaduta / expired card",
        kind: CardKind::Expired,
    },
    DemoCard {
        slug: "revocata",
        given_name: "Luca",
        surname: "Galli",
        tax_code: "GLLLCU70C15L219K",
        role: "carta revocata / revoked card",
        kind: CardKind::Revoked,
    },
    DemoCard {
        slug: "altro-certificatore",
        given_name: "Rosa",
        surname: "Blu",
        tax_code: "BLURSO82D10A944E",
        role: "certificatore non riconosciuto / untrusted issuer",
        kind: CardKind::UntrustedIssuer,
    },
    DemoCard {
        slug: "non-cns",
        given_name: "Mario",
        surname: "Rossi",
        tax_code: "RSSMRA80A01H501U",
        role: "certificato senza profilo CNS / not a CNS certificate",
        kind: CardKind::NoCnsPolicy,
    },
];

/// The simulated institutions of the demo: catalog id and protocol register code.
pub const DEMO_INSTITUTIONS: [(&str, &str); 3] =
    [("registro-imprese", "CCIAA-RM-RI"), ("inps", "INPS-AOO1"), ("inail", "INAIL-AOO1")];

/// Chambers of commerce with an address of their own in the demo: institution, office (from
/// the catalog's routing) and protocol register. The Registro Imprese simulator above stands
/// for the chamber of Rome and takes the other chambers' filings, as a national intake would.
pub const DEMO_OFFICES: [(&str, &str, &str); 1] =
    [("registro-imprese", "cciaa-milano-monza-brianza-lodi", "CCIAA-MI-RI")];

/// Where the demo's files are.
#[derive(Debug, Clone)]
pub struct DemoFiles {
    pub dir: PathBuf,
    pub database: PathBuf,
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub cards_dir: PathBuf,
    /// Password of every `.p12` card file.
    pub card_password: String,
}

impl DemoFiles {
    pub fn card_cert(&self, card: &DemoCard) -> PathBuf {
        self.cards_dir.join(format!("{}.pem", card.slug))
    }
    pub fn card_key(&self, card: &DemoCard) -> PathBuf {
        self.cards_dir.join(format!("{}-key.pem", card.slug))
    }
    pub fn card_p12(&self, card: &DemoCard) -> PathBuf {
        self.cards_dir.join(format!("{}.p12", card.slug))
    }
    /// The portal's own certificate towards institutions (TLS client and ModI signatures).
    pub fn portal_cert(&self) -> PathBuf {
        self.pki_dir().join("portal.pem")
    }
    pub fn portal_key(&self) -> PathBuf {
        self.pki_dir().join("portal-key.pem")
    }
    /// A simulated institution's certificate (TLS server and ModI signatures).
    pub fn institution_cert(&self, id: &str) -> PathBuf {
        self.pki_dir().join(format!("{id}.pem"))
    }
    pub fn institution_key(&self, id: &str) -> PathBuf {
        self.pki_dir().join(format!("{id}-key.pem"))
    }
    /// The demo certifier's revocation list.
    pub fn crl(&self) -> PathBuf {
        self.pki_dir().join("crl.pem")
    }
    fn pki_dir(&self) -> PathBuf {
        self.dir.join("pki")
    }

    /// Every file the demo needs, to tell a complete folder from an old or partial one.
    fn expected(&self) -> Vec<PathBuf> {
        let mut files = vec![
            self.ca_cert.clone(),
            self.dir.join("pki/ca-key.pem"),
            self.server_cert.clone(),
            self.server_key.clone(),
            self.portal_cert(),
            self.portal_key(),
            self.cards_dir.join("password.txt"),
        ];
        for (id, _) in DEMO_INSTITUTIONS {
            files.push(self.institution_cert(id));
            files.push(self.institution_key(id));
        }
        for card in &DEMO_CARDS {
            files.extend([self.card_cert(card), self.card_key(card), self.card_p12(card)]);
        }
        files
    }

    /// The PEM texts the listener needs: the demo CA signed both the server certificate and
    /// the cards.
    pub fn tls_material(&self) -> anyhow::Result<TlsMaterial> {
        let read = |p: &Path| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()));
        Ok(TlsMaterial {
            cert_chain_pem: read(&self.server_cert)?,
            key_pem: read(&self.server_key)?,
            client_ca_pem: read(&self.ca_cert)?,
            crl_pems: Vec::new(),
            crl_grace: std::time::Duration::from_secs(24 * 3600),
        })
    }
}

fn write(path: &Path, contents: &[u8], secret: bool) -> anyhow::Result<()> {
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    #[cfg(not(unix))]
    let _ = secret;
    Ok(())
}

fn random_password(random: &dyn Randomness) -> anyhow::Result<String> {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 14];
    random.fill(&mut bytes).map_err(|_| anyhow::anyhow!("no randomness for the card password"))?;
    Ok(bytes.iter().map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char).collect())
}

/// Creates the data folder on first run (PKI, cards); reuses it afterwards.
pub fn prepare(dir: &Path, random: &dyn Randomness) -> anyhow::Result<DemoFiles> {
    let pki_dir = dir.join("pki");
    let cards_dir = dir.join("cards");
    let files = DemoFiles {
        dir: dir.to_path_buf(),
        database: dir.join("sportello.db"),
        ca_cert: pki_dir.join("ca.pem"),
        server_cert: pki_dir.join("server.pem"),
        server_key: pki_dir.join("server-key.pem"),
        cards_dir: cards_dir.clone(),
        card_password: String::new(),
    };
    let password_file = cards_dir.join("password.txt");
    if files.expected().iter().all(|f| f.exists()) {
        let card_password = std::fs::read_to_string(&password_file)?.trim().to_string();
        return Ok(DemoFiles { card_password, ..files });
    }
    if files.ca_cert.exists() {
        tracing::warn!(dir = %dir.display(), "the demo PKI is incomplete (older version?): making it anew");
    }
    std::fs::create_dir_all(&pki_dir).with_context(|| format!("creating {}", pki_dir.display()))?;
    std::fs::create_dir_all(&cards_dir)?;
    let pki = TestPki::generate("Sportello demo CA")?;
    write(&files.ca_cert, pki.ca.cert_pem.as_bytes(), false)?;
    write(&pki_dir.join("ca-key.pem"), pki.ca.key_pem.as_bytes(), true)?;
    let server = pki.server(&["localhost", "127.0.0.1", "::1"])?;
    write(&files.server_cert, server.cert_pem.as_bytes(), false)?;
    write(&files.server_key, server.key_pem.as_bytes(), true)?;
    let portal = pki.client("sportello")?;
    write(&files.portal_cert(), portal.cert_pem.as_bytes(), false)?;
    write(&files.portal_key(), portal.key_pem.as_bytes(), true)?;
    for (id, _) in DEMO_INSTITUTIONS {
        let cert = pki.server(&["127.0.0.1", "localhost"])?;
        write(&files.institution_cert(id), cert.cert_pem.as_bytes(), false)?;
        write(&files.institution_key(id), cert.key_pem.as_bytes(), true)?;
    }
    let card_password = random_password(random)?;
    let rogue = TestPki::generate("Certificatore non riconosciuto")?;
    for card in &DEMO_CARDS {
        let mut spec = CardSpec::new(card.given_name, card.surname, card.tax_code);
        let now = time::OffsetDateTime::now_utc();
        match card.kind {
            CardKind::Expired => {
                spec.not_before = now - time::Duration::days(800);
                spec.not_after = now - time::Duration::days(30);
            }
            CardKind::NoCnsPolicy => spec.policies = vec!["1.3.6.1.4.1.99999.1".into()],
            CardKind::Valid | CardKind::Revoked | CardKind::UntrustedIssuer => {}
        }
        let issued = if card.kind == CardKind::UntrustedIssuer { rogue.card(&spec)? } else { pki.card(&spec)? };
        write(&files.card_cert(card), issued.cert_pem.as_bytes(), false)?;
        write(&files.card_key(card), issued.key_pem.as_bytes(), true)?;
        let p12 = issued.to_pkcs12(&card_password, &pki.ca.der, &format!("{} {}", card.given_name, card.surname))?;
        write(&files.card_p12(card), &p12, true)?;
    }
    refresh_crl(&files)?;
    write(&password_file, format!("{card_password}\n").as_bytes(), true)?;
    Ok(DemoFiles { card_password, ..files })
}

/// Signs the demo CRL anew (valid for a week), listing the revoked demo card. Run at every
/// start, so a demo left for weeks does not end with a stale CRL.
pub fn refresh_crl(files: &DemoFiles) -> anyhow::Result<PathBuf> {
    let read = |p: &Path| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()));
    let pki = TestPki::load(&read(&files.ca_cert)?, &read(&files.dir.join("pki/ca-key.pem"))?)?;
    let revoked: Vec<Vec<u8>> = DEMO_CARDS
        .iter()
        .filter(|c| c.kind == CardKind::Revoked)
        .filter_map(|c| read(&files.card_cert(c)).ok().and_then(|pem| identity::revocation::serial_of_pem(&pem)))
        .collect();
    let now = time::OffsetDateTime::now_utc();
    let crl = pki.crl(&revoked, now - time::Duration::minutes(5), now + time::Duration::days(7))?;
    let path = files.crl();
    write(&path, crl.as_bytes(), false)?;
    Ok(path)
}

/// A company the demo accountant serves besides Utente DiProva's business.
pub const DEMO_COMPANY: &str = "00743110157";

/// Who may file at each simulated institution: Utente DiProva for his own business
/// everywhere; Stefania Bianco as intermediary for that business and a company everywhere;
/// Giuseppe Verdi for his own business at INPS only.
fn demo_authorisations(
    institution: &str,
    grants: &mut std::collections::BTreeMap<String, Vec<domain::authorisation::Grant>>,
) {
    use domain::authorisation::Role;
    let [owner, accountant, inps_only, ..] = DEMO_CARDS;
    simulator::grant(grants, owner.tax_code, &[owner.tax_code], Role::Owner);
    simulator::grant(grants, accountant.tax_code, &[owner.tax_code, DEMO_COMPANY], Role::Intermediary);
    if institution == "inps" {
        simulator::grant(grants, inps_only.tax_code, &[inps_only.tax_code], Role::Owner);
    }
}

/// Starts the simulated institutions on loopback ports and returns them with the channels
/// that reach them.
pub async fn start_simulators(
    files: &DemoFiles,
    channels_dir: &Path,
    clock: std::sync::Arc<dyn domain::Clock>,
    random: std::sync::Arc<dyn Randomness>,
) -> anyhow::Result<(Vec<simulator::SimHandle>, delivery::channels::Channels)> {
    use crate::simulated::{start_simulated, ChannelTuning, PortalIdentity, SimSpec};
    let read = |p: &Path| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()));
    let mut specs = Vec::new();
    for (id, register) in DEMO_INSTITUTIONS {
        // Each institution checks on receipt with its own copy of its rules.
        let rules = match id {
            "inail" => simulator::inail_rules(),
            "inps" => simulator::inps_rules(),
            _ => simulator::registry_rules(),
        };
        let mut behaviour = simulator::Behaviour { rules, ..simulator::Behaviour::default() };
        demo_authorisations(id, &mut behaviour.authorisations);
        let mut spec = SimSpec::sportello(
            id,
            register,
            &read(&files.institution_cert(id))?,
            &read(&files.institution_key(id))?,
            behaviour,
        )
        .with_own_interface(channels_dir);
        // Each simulated institution keeps its ledger in the data folder: restarted, it still
        // knows what it processed.
        let ledgers = files.dir.join("ledgers");
        std::fs::create_dir_all(&ledgers).with_context(|| format!("creating {}", ledgers.display()))?;
        spec.ledger_path = Some(ledgers.join(format!("{id}.json")));
        specs.push(spec);
    }
    for (id, office, register) in DEMO_OFFICES {
        let Some(first) = specs.iter().find(|s| s.id == id) else { continue };
        let mut spec = first.clone();
        spec.register = register.to_string();
        spec.office = Some(office.to_string());
        spec.ledger_path = Some(files.dir.join("ledgers").join(format!("{id}-{office}.json")));
        specs.push(spec);
    }
    let portal = PortalIdentity {
        portal_id: "sportello".into(),
        cert_pem: read(&files.portal_cert())?,
        key_pem: read(&files.portal_key())?,
        ca_pem: read(&files.ca_cert)?,
    };
    let mut tuning = ChannelTuning::new(
        std::time::Duration::from_secs(5),
        domain::delivery::RetryPolicy {
            max_attempts: 4,
            base_delay: std::time::Duration::from_millis(500),
            max_delay: std::time::Duration::from_secs(10),
        },
    );
    // A callback not come within 20 s (the demo was stopped, say) is asked for; an
    // institution silent for 15 minutes is shown as "no news".
    tuning.callback_deadline = Some(std::time::Duration::from_secs(20));
    tuning.no_news_after = Some(std::time::Duration::from_secs(15 * 60));
    let (handles, channels) = start_simulated(specs, &portal, tuning, clock, random).await?;
    // In the order of DEMO_INSTITUTIONS, for the banner.
    let offices = DEMO_OFFICES.iter().map(|(id, office, _)| format!("{id}/{office}"));
    let ordered = DEMO_INSTITUTIONS
        .iter()
        .map(|(id, _)| id.to_string())
        .chain(offices)
        .filter_map(|key| handles.get(&key).cloned())
        .collect();
    Ok((ordered, channels))
}

/// The cards the demo's chooser offers (all of them: the refused ones show why).
pub fn chooser_cards(files: &DemoFiles) -> anyhow::Result<Vec<web::demo_cards::DemoCard>> {
    DEMO_CARDS
        .iter()
        .map(|card| {
            let path = files.card_cert(card);
            Ok(web::demo_cards::DemoCard {
                slug: card.slug.to_string(),
                label: format!("{} {} ({}): {}", card.given_name, card.surname, card.tax_code, card.role),
                cert_pem: std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?,
            })
        })
        .collect()
}
