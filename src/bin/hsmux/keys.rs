//! `hsmux keys`, `hsmux key create|rotate|destroy|public` and `hsmux sign`: key lifecycle
//! by RFC 7512 URI, on every kind of slot through hsmux's own PKCS#11 functions
//! (`p11.rs`). What an object is and how versions are ordered: `keyinfo.rs`.
//!
//! Rotation is the same call everywhere: a new key of the newest version's type with the
//! same `CKA_LABEL` and the next `CKA_ID`. The soft token and module slots keep both
//! objects (the old one still decrypts and verifies until destroyed); a remote service
//! takes `C_GenerateKey*` on an existing name as a new version of that key and names the
//! version itself (its `CKA_ID`).

use crate::cli::{ConfigArg, PinSource};
use crate::keyinfo::{self, Object};
use crate::p11::{self, Token};
use clap::{Args, Subcommand, ValueEnum};
use cryptoki::context::Pkcs11;
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, KeyType, ObjectHandle};
use cryptoki::session::Session;
use hsmux::config::uri::{ObjectType, Pkcs11Uri};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

/// What every key verb takes besides its URI.
#[derive(Args, Debug)]
pub struct Common {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Where the user PIN comes from: file:PATH (its first line) or env:VAR (default: the
    /// URI's pin-source or pin-value, else asked on the terminal)
    #[arg(long, value_name = "SOURCE")]
    pub pin_source: Option<PinSource>,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub common: Common,
    /// Print JSON (one object: slots, their keys, each key's versions newest first)
    #[arg(long)]
    pub json: bool,
    /// What to list (default `pkcs11:`, every object of every token)
    #[arg(value_name = "URI")]
    pub uri: Option<Pkcs11Uri>,
}

#[derive(Subcommand, Debug)]
pub enum KeyVerb {
    /// Create a key named by the URI's object= on the token it selects
    #[command(after_help = crate::cli::EXIT_STATUS)]
    Create(CreateArgs),
    /// A new version of the key: same label, next CKA_ID; the old version is kept
    #[command(after_help = crate::cli::EXIT_STATUS)]
    Rotate(UriArgs),
    /// Destroy the objects the URI selects (every version unless id= names one)
    #[command(after_help = crate::cli::EXIT_STATUS)]
    Destroy(DestroyArgs),
    /// Print the public key (newest version unless id= names one) as PEM
    /// (SubjectPublicKeyInfo)
    #[command(after_help = crate::cli::EXIT_STATUS)]
    Public(PublicArgs),
}

#[derive(Args, Debug)]
pub struct UriArgs {
    #[command(flatten)]
    pub common: Common,
    /// Print the new objects as JSON
    #[arg(long)]
    pub json: bool,
    /// The key, e.g. pkcs11:token=prod;object=ca-signing
    #[arg(value_name = "URI")]
    pub uri: Pkcs11Uri,
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    #[command(flatten)]
    pub key: UriArgs,
    /// ec:p256, ec:p384, rsa:2048, rsa:3072, rsa:4096, aes:256, hmac:256, ml-dsa:44/65/87,
    /// ml-kem:512/768/1024
    #[arg(long = "type", value_name = "TYPE")]
    pub kind: KeyKind,
}

#[derive(Args, Debug)]
pub struct DestroyArgs {
    #[command(flatten)]
    pub common: Common,
    /// Do not ask (needed when there is no terminal to ask on)
    #[arg(long)]
    pub yes: bool,
    /// The objects, e.g. pkcs11:token=prod;object=old-key;id=%01
    #[arg(value_name = "URI")]
    pub uri: Pkcs11Uri,
}

#[derive(Args, Debug)]
pub struct PublicArgs {
    #[command(flatten)]
    pub common: Common,
    /// Write the PEM here instead of stdout
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    #[arg(value_name = "URI")]
    pub uri: Pkcs11Uri,
}

#[derive(Args, Debug)]
pub struct SignArgs {
    #[command(flatten)]
    pub common: Common,
    /// The data to sign
    #[arg(long = "in", value_name = "FILE")]
    pub input: PathBuf,
    /// Where the signature goes (default: stdout)
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    #[arg(long, value_enum)]
    pub mechanism: SignMech,
    /// ECDSA: write PKCS#11's r||s instead of the DER (X9.62) form OpenSSL reads
    #[arg(long)]
    pub raw: bool,
    /// The key (newest version unless id= names one)
    #[arg(value_name = "URI")]
    pub uri: Pkcs11Uri,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignMech {
    EcdsaSha256,
    EcdsaSha384,
    RsaPssSha256,
    RsaPssSha384,
    RsaPkcsSha256,
    HmacSha256,
    Ed25519,
}

/// A key type and size, as `--type` writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyKind {
    Ec(String),
    Rsa(u64),
    Aes(u64),
    Hmac(u64),
    /// ML-DSA-44/65/87 and ML-KEM-512/768/1024 (by the number in their name).
    MlDsa(u64),
    MlKem(u64),
}

impl std::str::FromStr for KeyKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!("{s:?}: expected ec:p256|ec:p384|rsa:2048|rsa:3072|rsa:4096|aes:256|hmac:256|ml-dsa:65|ml-kem:768")
        };
        let (kind, size) = s.split_once(':').ok_or_else(bad)?;
        let n = || size.parse::<u64>().map_err(|_| bad());
        match kind {
            "ec" if keyinfo::curve_params(size).is_some() => Ok(KeyKind::Ec(size.into())),
            "rsa" if matches!(n()?, 2048 | 3072 | 4096) => Ok(KeyKind::Rsa(n()?)),
            "aes" if matches!(n()?, 128 | 192 | 256) => Ok(KeyKind::Aes(n()?)),
            "hmac" if matches!(n()?, 256 | 384 | 512) => Ok(KeyKind::Hmac(n()?)),
            "ml-dsa" if matches!(n()?, 44 | 65 | 87) => Ok(KeyKind::MlDsa(n()?)),
            "ml-kem" if matches!(n()?, 512 | 768 | 1024) => Ok(KeyKind::MlKem(n()?)),
            _ => Err(bad()),
        }
    }
}

impl KeyKind {
    /// The kind of an existing version (for rotation).
    fn of(o: &Object) -> Option<KeyKind> {
        if o.parameter_set.is_some() {
            return o.kind().parse().ok();
        }
        match (o.key_type.as_deref()?, &o.curve, o.size) {
            ("ec", Some(c), _) => Some(KeyKind::Ec(c.clone())),
            ("rsa", _, Some(n)) => Some(KeyKind::Rsa(n)),
            ("aes", _, Some(n)) => Some(KeyKind::Aes(n)),
            (t, _, Some(n)) if t == "generic-secret" || t.starts_with("hmac") => {
                Some(KeyKind::Hmac(n))
            }
            _ => None,
        }
    }
}

/// Runs a verb's body; failures print `hsmux <verb>: why` and exit 1.
fn report(verb: &str, r: Result<(), String>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("hsmux {verb}: {why}");
            ExitCode::from(1)
        }
    }
}

fn context(c: &Common) -> Result<Pkcs11, String> {
    p11::open(c.config.config.as_deref())
}

/// `hsmux keys [URI]`.
pub fn list(a: &ListArgs) -> ExitCode {
    report("keys", list_run(a))
}

fn list_run(a: &ListArgs) -> Result<(), String> {
    let u = a.uri.clone().unwrap_or_default();
    let p = context(&a.common)?;
    let mut slots = Vec::new();
    for t in p11::tokens(&p, &u)? {
        let s = p11::session(&p, &t, &u, a.common.pin_source.as_ref(), false, false)?;
        let objects = p11::find(&s, &u)?
            .into_iter()
            .map(|h| keyinfo::describe(&s, h, &t.uri))
            .collect::<Result<Vec<_>, _>>()?;
        slots.push((t, keyinfo::group(objects)));
    }
    if a.json {
        let json: Vec<_> = slots
            .iter()
            .map(|(t, keys)| {
                serde_json::json!({
                    "slot": t.slot.id(),
                    "token": t.info.label(),
                    "uri": t.uri.to_string(),
                    "keys": keys.iter().map(|(label, versions)| serde_json::json!({
                        "label": label, "versions": versions,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        println!("{}", serde_json::json!({ "slots": json }));
        return Ok(());
    }
    for (t, keys) in &slots {
        println!("slot {}: token {:?} {}", t.slot.id(), t.info.label(), t.uri);
        if keys.is_empty() {
            println!("  no objects");
        }
        for (label, versions) in keys {
            println!("  {label:?}: {} version(s), newest first", versions.len());
            for v in versions {
                let id = v.id_text.clone().unwrap_or_else(|| v.id.clone());
                for o in &v.objects {
                    println!("    id {id}  {:<10} {:<12} {}", o.class, o.kind(), o.uri);
                }
            }
        }
    }
    Ok(())
}

/// `hsmux key ...`.
pub fn key(verb: &KeyVerb) -> ExitCode {
    match verb {
        KeyVerb::Create(a) => report("key create", create(a)),
        KeyVerb::Rotate(a) => report("key rotate", rotate(a)),
        KeyVerb::Destroy(a) => match destroy(a) {
            Err(Refused(why)) => {
                eprintln!("hsmux key destroy: {why}");
                ExitCode::from(2)
            }
            Ok(r) => report("key destroy", r),
        },
        KeyVerb::Public(a) => report("key public", public(a)),
    }
}

/// The label a URI names, for verbs that act on one key.
fn label_of(u: &Pkcs11Uri) -> Result<String, String> {
    u.object
        .clone()
        .ok_or_else(|| format!("{u}: name the key with object=<label>"))
}

/// A logged-in read-write session on the one token the URI selects.
fn rw_session(a: &UriArgs) -> Result<(Pkcs11, Token, Session), String> {
    let p = context(&a.common)?;
    let t = p11::one_token(&p, &a.uri)?;
    let s = p11::session(&p, &t, &a.uri, a.common.pin_source.as_ref(), true, true)?;
    Ok((p, t, s))
}

/// Every version of `label` on the session, newest first.
fn versions(s: &Session, t: &Token, label: &str) -> Result<Vec<keyinfo::Version>, String> {
    let u = Pkcs11Uri {
        object: Some(label.into()),
        ..Pkcs11Uri::default()
    };
    let objects = p11::find(s, &u)?
        .into_iter()
        .map(|h| keyinfo::describe(s, h, &t.uri))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(keyinfo::group(objects)
        .into_iter()
        .next()
        .map(|(_, v)| v)
        .unwrap_or_default())
}

fn create(a: &CreateArgs) -> Result<(), String> {
    let label = label_of(&a.key.uri)?;
    let (_p, t, s) = rw_session(&a.key)?;
    let existing = versions(&s, &t, &label)?;
    if !existing.is_empty() {
        return Err(format!(
            "{label:?} exists on token {:?} ({} version(s)): `hsmux key rotate` makes a new one",
            t.info.label(),
            existing.len()
        ));
    }
    let id = match &a.key.uri.id {
        Some(id) => id.clone(),
        None => keyinfo::next_id(None, &random4(&s)?),
    };
    let made = generate(&s, &a.kind, &label, &id)?;
    show_new(&s, &t, &made, a.key.json, "created")
}

fn rotate(a: &UriArgs) -> Result<(), String> {
    let label = label_of(&a.uri)?;
    let (_p, t, s) = rw_session(a)?;
    let existing = versions(&s, &t, &label)?;
    let newest = existing
        .first()
        .ok_or_else(|| format!("no key {label:?} on token {:?}", t.info.label()))?;
    let kind = newest
        .objects
        .iter()
        .find_map(KeyKind::of)
        .ok_or_else(|| format!("{label:?}: hsmux does not rotate this kind of key"))?;
    let id = keyinfo::next_id(Some(&newest.objects[0].id_bytes), &random4(&s)?);
    let made = generate(&s, &kind, &label, &id)?;
    show_new(&s, &t, &made, a.json, "rotated")?;
    if !a.json {
        for v in &existing {
            let text = v.id_text.clone().unwrap_or_else(|| v.id.clone());
            println!(
                "kept: id {text} (decrypts and verifies until destroyed: {})",
                v.objects[0].uri
            );
        }
    }
    Ok(())
}

fn random4(s: &Session) -> Result<[u8; 4], String> {
    let r = s
        .generate_random_vec(4)
        .map_err(|e| format!("C_GenerateRandom: {e}"))?;
    r.try_into().map_err(|_| "C_GenerateRandom: short".into())
}

/// Generates a token key of `kind`; returns its objects (private key first).
fn generate(
    s: &Session,
    kind: &KeyKind,
    label: &str,
    id: &[u8],
) -> Result<Vec<ObjectHandle>, String> {
    let common = |private: bool| {
        let mut t = vec![
            Attribute::Token(true),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id.to_vec()),
        ];
        if private {
            t.extend([
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
            ]);
        }
        t
    };
    let fail =
        |e: cryptoki::error::Error| format!("generating {label:?}: {e} (see the log line above)");
    let pair = |m: Mechanism, mut public: Vec<Attribute>, private: Vec<Attribute>| {
        public.extend(common(false));
        let mut private_t = common(true);
        private_t.extend(private);
        s.generate_key_pair(&m, &public, &private_t)
            .map(|(p, k)| vec![k, p])
            .map_err(fail)
    };
    let secret = |m: Mechanism, kt: KeyType, bits: u64, usage: Vec<Attribute>| {
        let mut t = common(true);
        t.extend([
            Attribute::KeyType(kt),
            Attribute::ValueLen((bits / 8).into()),
        ]);
        t.extend(usage);
        s.generate_key(&m, &t).map(|k| vec![k]).map_err(fail)
    };
    match kind {
        KeyKind::Ec(c) => pair(
            Mechanism::EccKeyPairGen,
            vec![
                Attribute::EcParams(keyinfo::curve_params(c).unwrap_or_default()),
                Attribute::Verify(true),
            ],
            vec![Attribute::Sign(true), Attribute::Decrypt(false)],
        ),
        KeyKind::Rsa(bits) => pair(
            Mechanism::RsaPkcsKeyPairGen,
            vec![
                Attribute::ModulusBits((*bits).into()),
                Attribute::PublicExponent(vec![1, 0, 1]),
                Attribute::Verify(true),
                Attribute::Encrypt(true),
            ],
            vec![Attribute::Sign(true), Attribute::Decrypt(true)],
        ),
        KeyKind::Aes(bits) => secret(
            Mechanism::AesKeyGen,
            KeyType::AES,
            *bits,
            vec![Attribute::Encrypt(true), Attribute::Decrypt(true)],
        ),
        KeyKind::Hmac(bits) => secret(
            Mechanism::GenericSecretKeyGen,
            KeyType::GENERIC_SECRET,
            *bits,
            vec![Attribute::Sign(true), Attribute::Verify(true)],
        ),
        KeyKind::MlDsa(n) => {
            use cryptoki::object::MlDsaParameterSetType as P;
            let set = match n {
                44 => P::ML_DSA_44,
                65 => P::ML_DSA_65,
                _ => P::ML_DSA_87,
            };
            pair(
                Mechanism::MlDsaKeyPairGen,
                vec![Attribute::ParameterSet(set.into()), Attribute::Verify(true)],
                vec![Attribute::Sign(true)],
            )
        }
        KeyKind::MlKem(n) => {
            use cryptoki::object::MlKemParameterSetType as P;
            let set = match n {
                512 => P::ML_KEM_512,
                768 => P::ML_KEM_768,
                _ => P::ML_KEM_1024,
            };
            pair(
                Mechanism::MlKemKeyPairGen,
                vec![
                    Attribute::ParameterSet(set.into()),
                    Attribute::Encapsulate(true),
                ],
                vec![Attribute::Decapsulate(true)],
            )
        }
    }
}

/// Prints the objects just made (their id is the token's: a remote service names the
/// version itself).
fn show_new(
    s: &Session,
    t: &Token,
    made: &[ObjectHandle],
    json: bool,
    what: &str,
) -> Result<(), String> {
    let objects = made
        .iter()
        .map(|h| keyinfo::describe(s, *h, &t.uri))
        .collect::<Result<Vec<_>, _>>()?;
    if json {
        println!("{}", serde_json::json!({ what: objects }));
    } else {
        for o in &objects {
            println!("{what}: {} {} id {} {}", o.class, o.kind(), o.id, o.uri);
        }
    }
    Ok(())
}

/// A refusal to act without confirmation: a usage error (exit status 2).
struct Refused(String);

fn destroy(a: &DestroyArgs) -> Result<Result<(), String>, Refused> {
    let u = &a.uri;
    if u.object.is_none() && u.id.is_none() {
        return Err(Refused(format!(
            "{u}: name what to destroy with object= and/or id="
        )));
    }
    if !a.yes && !std::io::stdin().is_terminal() {
        return Err(Refused(
            "no terminal to confirm on: give --yes to destroy without asking".into(),
        ));
    }
    Ok(destroy_run(a))
}

fn destroy_run(a: &DestroyArgs) -> Result<(), String> {
    let p = context(&a.common)?;
    let t = p11::one_token(&p, &a.uri)?;
    let s = p11::session(&p, &t, &a.uri, a.common.pin_source.as_ref(), true, true)?;
    let objects = p11::find(&s, &a.uri)?
        .into_iter()
        .map(|h| keyinfo::describe(&s, h, &t.uri))
        .collect::<Result<Vec<_>, _>>()?;
    if objects.is_empty() {
        return Err(format!("nothing matches {}", a.uri));
    }
    for o in &objects {
        println!(
            "{} {} {:?} id {}: {}",
            o.class,
            o.kind(),
            o.label,
            o.id,
            o.uri
        );
    }
    if !a.yes {
        eprint!("destroy these {} object(s)? [y/N] ", objects.len());
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().read_line(&mut answer);
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Err("not confirmed: nothing destroyed".into());
        }
    }
    for o in &objects {
        s.destroy_object(o.handle)
            .map_err(|e| format!("C_DestroyObject {}: {e} (see the log line above)", o.uri))?;
    }
    println!("destroyed {} object(s)", objects.len());
    Ok(())
}

/// The newest version's object of one of `classes` that the URI selects.
fn pick(s: &Session, t: &Token, u: &Pkcs11Uri, classes: &[ObjectType]) -> Result<Object, String> {
    label_of(u)?;
    let objects = p11::find(s, u)?
        .into_iter()
        .map(|h| keyinfo::describe(s, h, &t.uri))
        .collect::<Result<Vec<_>, _>>()?;
    let names: Vec<&str> = classes.iter().map(|c| c.name()).collect();
    keyinfo::group(objects)
        .into_iter()
        .flat_map(|(_, v)| v)
        .flat_map(|v| v.objects)
        .find(|o| names.contains(&o.class.as_str()))
        .ok_or_else(|| format!("no {} object matches {u}", names.join(" or ")))
}

fn public(a: &PublicArgs) -> Result<(), String> {
    let p = context(&a.common)?;
    let t = p11::one_token(&p, &a.uri)?;
    let s = p11::session(&p, &t, &a.uri, a.common.pin_source.as_ref(), false, false)?;
    let u = Pkcs11Uri {
        object_type: Some(ObjectType::Public),
        ..a.uri.clone()
    };
    let o = pick(&s, &t, &u, &[ObjectType::Public])?;
    let pem = keyinfo::public_pem(&s, o.handle)?;
    write_out(a.out.as_ref(), pem.as_bytes())
}

fn write_out(out: Option<&PathBuf>, data: &[u8]) -> Result<(), String> {
    match out {
        Some(f) => std::fs::write(f, data).map_err(|e| format!("{}: {e}", f.display())),
        None => std::io::stdout()
            .write_all(data)
            .map_err(|e| format!("stdout: {e}")),
    }
}

/// `hsmux sign`.
pub fn sign(a: &SignArgs) -> ExitCode {
    report("sign", sign_run(a))
}

fn sign_run(a: &SignArgs) -> Result<(), String> {
    let data = std::fs::read(&a.input).map_err(|e| format!("{}: {e}", a.input.display()))?;
    let p = context(&a.common)?;
    let t = p11::one_token(&p, &a.uri)?;
    let s = p11::session(&p, &t, &a.uri, a.common.pin_source.as_ref(), false, true)?;
    let key = pick(
        &s,
        &t,
        &a.uri,
        &[ObjectType::Private, ObjectType::SecretKey],
    )?;
    let pss = |hash: MechanismType, mgf: PkcsMgfType, len: u64| PkcsPssParams {
        hash_alg: hash,
        mgf,
        s_len: len.into(),
    };
    let m = match a.mechanism {
        SignMech::EcdsaSha256 => Mechanism::EcdsaSha256,
        SignMech::EcdsaSha384 => Mechanism::EcdsaSha384,
        SignMech::RsaPssSha256 => {
            Mechanism::Sha256RsaPkcsPss(pss(MechanismType::SHA256, PkcsMgfType::MGF1_SHA256, 32))
        }
        SignMech::RsaPssSha384 => {
            Mechanism::Sha384RsaPkcsPss(pss(MechanismType::SHA384, PkcsMgfType::MGF1_SHA384, 48))
        }
        SignMech::RsaPkcsSha256 => Mechanism::Sha256RsaPkcs,
        SignMech::HmacSha256 => Mechanism::Sha256Hmac,
        SignMech::Ed25519 => Mechanism::Eddsa(cryptoki::mechanism::eddsa::EddsaParams::new(
            cryptoki::mechanism::eddsa::EddsaSignatureScheme::Pure,
        )),
    };
    let sig = match s.sign(&m, key.handle, &data) {
        // A token without CKM_ECDSA_SHA* (SoftHSMv2): the digest here, CKM_ECDSA there.
        Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::MechanismInvalid, _))
            if matches!(a.mechanism, SignMech::EcdsaSha256 | SignMech::EcdsaSha384) =>
        {
            let alg = match a.mechanism {
                SignMech::EcdsaSha384 => &aws_lc_rs::digest::SHA384,
                _ => &aws_lc_rs::digest::SHA256,
            };
            let digest = aws_lc_rs::digest::digest(alg, &data);
            s.sign(&Mechanism::Ecdsa, key.handle, digest.as_ref())
        }
        r => r,
    }
    .map_err(|e| format!("C_Sign with {}: {e} (see the log line above)", key.uri))?;
    let ecdsa = matches!(a.mechanism, SignMech::EcdsaSha256 | SignMech::EcdsaSha384);
    let sig = if ecdsa && !a.raw {
        ecdsa_der(&sig)?
    } else {
        sig
    };
    write_out(a.out.as_ref(), &sig)
}

/// An ECDSA signature as X9.62 DER (SEQUENCE of r and s) from PKCS#11's r||s.
fn ecdsa_der(rs: &[u8]) -> Result<Vec<u8>, String> {
    use der::Encode;
    #[derive(der::Sequence)]
    struct Sig<'a> {
        r: der::asn1::UintRef<'a>,
        s: der::asn1::UintRef<'a>,
    }
    let (r, s) = rs.split_at(rs.len() / 2);
    let e = |e: der::Error| format!("DER encoding: {e}");
    Sig {
        r: der::asn1::UintRef::new(r).map_err(e)?,
        s: der::asn1::UintRef::new(s).map_err(e)?,
    }
    .to_der()
    .map_err(e)
}
