//! RFC 7512 `pkcs11:` URIs: the one way to name a token or a key, in the configuration
//! (where a key is named) and on the `hsmux` command line.
//!
//! `pkcs11:token=prod;object=ca-signing;type=private?pin-source=file:/etc/pin` is parsed
//! into a [`Pkcs11Uri`]: path attributes (`;`-separated) select tokens and objects, query
//! attributes (`&`-separated) say how to log in and which module is meant. Values are
//! percent-decoded (`id=%01%02` is the two bytes 1, 2); a `%` not followed by two hex
//! digits, a blank or a non-ASCII character is refused (they must be percent-encoded).
//! An unknown attribute and a repeated attribute are refused, naming the attribute; a
//! vendor attribute (`x-...`, RFC 7512 section 2.3) is accepted and ignored (listed in
//! [`Pkcs11Uri::ignored`]). [`Pkcs11Uri`]'s `Display` writes the URI back in canonical form.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use std::fmt;

/// Everything but RFC 3986's unreserved characters is percent-encoded when written.
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `type=`: the object class a URI selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectType {
    Public,
    Private,
    Cert,
    SecretKey,
    Data,
}

impl ObjectType {
    const ALL: [(ObjectType, &'static str); 5] = [
        (ObjectType::Public, "public"),
        (ObjectType::Private, "private"),
        (ObjectType::Cert, "cert"),
        (ObjectType::SecretKey, "secret-key"),
        (ObjectType::Data, "data"),
    ];
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(t, _)| *t == self)
            .map_or("", |(_, n)| n)
    }
    /// The PKCS#11 object class (`CKO_*`).
    pub fn class(self) -> u64 {
        match self {
            ObjectType::Data => 0,
            ObjectType::Cert => 1,
            ObjectType::Public => 2,
            ObjectType::Private => 3,
            ObjectType::SecretKey => 4,
        }
    }
    /// The type of a `CKO_*` class, if a URI can name it.
    pub fn of_class(class: u64) -> Option<ObjectType> {
        Self::ALL
            .iter()
            .map(|(t, _)| *t)
            .find(|t| t.class() == class)
    }
}

/// A parsed `pkcs11:` URI. Absent attributes are `None` (match anything).
#[derive(Default, Clone, PartialEq, Eq)]
pub struct Pkcs11Uri {
    pub token: Option<String>,
    pub manufacturer: Option<String>,
    pub serial: Option<String>,
    pub model: Option<String>,
    pub library_manufacturer: Option<String>,
    pub library_description: Option<String>,
    /// `library-version=M` or `M.N`.
    pub library_version: Option<(u8, u8)>,
    pub slot_description: Option<String>,
    pub slot_manufacturer: Option<String>,
    pub slot_id: Option<u64>,
    /// `object=`: the `CKA_LABEL`.
    pub object: Option<String>,
    pub object_type: Option<ObjectType>,
    /// `id=`: the `CKA_ID` bytes.
    pub id: Option<Vec<u8>>,
    /// `pin-source=`: where the PIN is read from (`file:PATH`, `env:VAR`).
    pub pin_source: Option<String>,
    /// `pin-value=`: the PIN itself.
    pub pin_value: Option<zeroize::Zeroizing<String>>,
    pub module_name: Option<String>,
    pub module_path: Option<String>,
    /// Vendor attributes (`x-...`) that were given and are ignored.
    pub ignored: Vec<String>,
}

impl fmt::Debug for Pkcs11Uri {
    /// The URI as written, with a `pin-value` redacted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.clone();
        if shown.pin_value.is_some() {
            shown.pin_value = Some(String::from("redacted").into());
        }
        write!(f, "Pkcs11Uri({shown})")
    }
}

/// Why a URI was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UriError(pub String);

impl fmt::Display for UriError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UriError {}

fn bad(why: impl Into<String>) -> UriError {
    UriError(why.into())
}

/// The raw value's bytes after percent-decoding, refusing what RFC 3986 does not allow
/// unencoded (blanks, controls, non-ASCII) and a malformed `%`.
fn decode(name: &str, raw: &str) -> Result<Vec<u8>, UriError> {
    let b = raw.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        if c == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .filter(|h| h.iter().all(u8::is_ascii_hexdigit));
            if hex.is_none() {
                return Err(bad(format!(
                    "attribute `{name}`: `%` must be followed by two hex digits (write a \
                     literal % as %25)"
                )));
            }
        } else if !c.is_ascii_graphic() {
            return Err(bad(format!(
                "attribute `{name}`: the character {:?} must be percent-encoded",
                raw[i..].chars().next().unwrap_or(' ')
            )));
        }
    }
    Ok(percent_decode_str(raw).collect())
}

fn text(name: &str, raw: &str) -> Result<String, UriError> {
    String::from_utf8(decode(name, raw)?)
        .map_err(|_| bad(format!("attribute `{name}`: the value is not UTF-8 text")))
}

fn number<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, UriError> {
    v.parse()
        .map_err(|_| bad(format!("attribute `{name}`: {v:?} is not a number")))
}

/// Stores `v` in `slot`, refusing a second occurrence of the attribute.
fn once<T>(slot: &mut Option<T>, name: &str, v: T) -> Result<(), UriError> {
    if slot.is_some() {
        return Err(bad(format!("attribute `{name}` is given twice")));
    }
    *slot = Some(v);
    Ok(())
}

impl std::str::FromStr for Pkcs11Uri {
    type Err = UriError;

    fn from_str(s: &str) -> Result<Self, UriError> {
        let rest = s
            .get(..7)
            .filter(|p| p.eq_ignore_ascii_case("pkcs11:"))
            .map(|_| &s[7..])
            .ok_or_else(|| bad(format!("{s:?} is not a pkcs11: URI")))?;
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        let mut u = Pkcs11Uri::default();
        let mut vendor = std::collections::BTreeSet::new();
        let parts = path.split(';').map(|a| (a, true)).chain(
            query
                .into_iter()
                .flat_map(|q| q.split('&'))
                .map(|a| (a, false)),
        );
        for (attr, in_path) in parts {
            if attr.is_empty() {
                continue;
            }
            let (name, raw) = attr
                .split_once('=')
                .ok_or_else(|| bad(format!("attribute {attr:?} has no `=` (write name=value)")))?;
            let name = name.to_ascii_lowercase();
            if name.starts_with("x-") && name.len() > 2 {
                decode(&name, raw)?;
                if !vendor.insert(name.clone()) {
                    return Err(bad(format!("attribute `{name}` is given twice")));
                }
                u.ignored.push(name);
                continue;
            }
            u.set(&name, raw, in_path)?;
        }
        Ok(u)
    }
}

impl Pkcs11Uri {
    /// One attribute, in the path (`in_path`) or in the query.
    fn set(&mut self, name: &str, raw: &str, in_path: bool) -> Result<(), UriError> {
        let n = name;
        match (in_path, n) {
            (true, "token") => once(&mut self.token, n, text(n, raw)?),
            (true, "manufacturer") => once(&mut self.manufacturer, n, text(n, raw)?),
            (true, "serial") => once(&mut self.serial, n, text(n, raw)?),
            (true, "model") => once(&mut self.model, n, text(n, raw)?),
            (true, "library-manufacturer") => {
                once(&mut self.library_manufacturer, n, text(n, raw)?)
            }
            (true, "library-description") => once(&mut self.library_description, n, text(n, raw)?),
            (true, "library-version") => {
                let v = text(n, raw)?;
                let (major, minor) = v.split_once('.').unwrap_or((&v, "0"));
                once(
                    &mut self.library_version,
                    n,
                    (number(n, major)?, number(n, minor)?),
                )
            }
            (true, "slot-description") => once(&mut self.slot_description, n, text(n, raw)?),
            (true, "slot-manufacturer") => once(&mut self.slot_manufacturer, n, text(n, raw)?),
            (true, "slot-id") => once(&mut self.slot_id, n, number(n, &text(n, raw)?)?),
            (true, "object") => once(&mut self.object, n, text(n, raw)?),
            (true, "id") => once(&mut self.id, n, decode(n, raw)?),
            (true, "type") => {
                let v = text(n, raw)?;
                let t = ObjectType::ALL
                    .iter()
                    .find(|(_, name)| *name == v)
                    .map(|(t, _)| *t)
                    .ok_or_else(|| {
                        bad(format!(
                            "attribute `type`: {v:?} is not one of public, private, cert, \
                             secret-key, data"
                        ))
                    })?;
                once(&mut self.object_type, n, t)
            }
            (false, "pin-source") => once(&mut self.pin_source, n, text(n, raw)?),
            (false, "pin-value") => once(&mut self.pin_value, n, text(n, raw)?.into()),
            (false, "module-name") => once(&mut self.module_name, n, text(n, raw)?),
            (false, "module-path") => once(&mut self.module_path, n, text(n, raw)?),
            _ => {
                let known_elsewhere = if in_path {
                    QUERY_ATTRS.contains(&n)
                } else {
                    PATH_ATTRS.contains(&n)
                };
                Err(bad(if known_elsewhere {
                    format!(
                        "attribute `{n}` belongs in the {} part of the URI",
                        if in_path {
                            "query (after `?`)"
                        } else {
                            "path (before `?`)"
                        }
                    )
                } else {
                    format!(
                        "unknown attribute `{n}` (RFC 7512 knows {}; vendor attributes start \
                         with x-)",
                        [&PATH_ATTRS[..], &QUERY_ATTRS[..]].concat().join(", ")
                    )
                }))
            }
        }
    }

    /// The path attributes that select a token (not an object).
    pub fn names_token(&self) -> bool {
        self.token.is_some()
            || self.manufacturer.is_some()
            || self.serial.is_some()
            || self.model.is_some()
            || self.slot_id.is_some()
            || self.slot_description.is_some()
            || self.slot_manufacturer.is_some()
    }
}

/// The query attributes, in the order `Display` writes them.
const QUERY_ATTRS: [&str; 4] = ["pin-source", "pin-value", "module-name", "module-path"];

/// The path attributes, in the order `Display` writes them.
const PATH_ATTRS: [&str; 13] = [
    "token",
    "manufacturer",
    "serial",
    "model",
    "library-manufacturer",
    "library-description",
    "library-version",
    "slot-description",
    "slot-manufacturer",
    "slot-id",
    "object",
    "type",
    "id",
];

impl fmt::Display for Pkcs11Uri {
    /// Canonical form: the RFC's attribute order, every value percent-encoded except
    /// unreserved characters, `id` as `%XX` per byte. Vendor attributes are not written.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let enc = |v: &str| utf8_percent_encode(v, ENCODE).to_string();
        let text = |v: &Option<String>| v.as_deref().map(enc);
        let hex = |b: &Vec<u8>| b.iter().map(|x| format!("%{x:02X}")).collect();
        let path = [
            text(&self.token),
            text(&self.manufacturer),
            text(&self.serial),
            text(&self.model),
            text(&self.library_manufacturer),
            text(&self.library_description),
            self.library_version.map(|(a, b)| format!("{a}.{b}")),
            text(&self.slot_description),
            text(&self.slot_manufacturer),
            self.slot_id.map(|n| n.to_string()),
            text(&self.object),
            self.object_type.map(|t| t.name().to_string()),
            self.id.as_ref().map(hex),
        ];
        let path: Vec<String> = PATH_ATTRS
            .iter()
            .zip(path)
            .filter_map(|(name, v)| Some(format!("{name}={}", v?)))
            .collect();
        let pin = self.pin_value.as_ref().map(|p| p.to_string());
        let query: Vec<String> = QUERY_ATTRS
            .iter()
            .zip([&self.pin_source, &pin, &self.module_name, &self.module_path])
            .filter_map(|(name, v)| Some(format!("{name}={}", text(v)?)))
            .collect();
        write!(f, "pkcs11:{}", path.join(";"))?;
        if !query.is_empty() {
            write!(f, "?{}", query.join("&"))?;
        }
        Ok(())
    }
}

/// A key named in the configuration: a plain name, or a `pkcs11:` URI with `object=` (the
/// name) and optionally `type=` and `id=`. Returns the name. A URI that names a token,
/// a module or a PIN is refused: the configuration says those in its own keys.
pub fn key_name(v: &str) -> Result<String, UriError> {
    if !v
        .get(..7)
        .is_some_and(|p| p.eq_ignore_ascii_case("pkcs11:"))
    {
        return Ok(v.to_string());
    }
    let u: Pkcs11Uri = v.parse()?;
    let beyond = u.names_token()
        || u.library_manufacturer.is_some()
        || u.library_description.is_some()
        || u.library_version.is_some()
        || u.pin_source.is_some()
        || u.pin_value.is_some()
        || u.module_name.is_some()
        || u.module_path.is_some();
    if beyond {
        return Err(bad(format!(
            "{v:?}: a key in the configuration is named by object= (and type=, id=) only; \
             the slot and its PIN are the table's own keys"
        )));
    }
    u.object
        .ok_or_else(|| bad(format!("{v:?}: the URI has no object= (the key's name)")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Pkcs11Uri {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }
    fn refused(s: &str) -> String {
        s.parse::<Pkcs11Uri>().expect_err(s).0
    }

    /// The examples of RFC 7512 section 3.
    #[test]
    fn rfc_7512_examples() {
        assert_eq!(p("pkcs11:"), Pkcs11Uri::default());
        let u = p("pkcs11:object=my-pubkey;type=public");
        assert_eq!(u.object.as_deref(), Some("my-pubkey"));
        assert_eq!(u.object_type, Some(ObjectType::Public));
        let u = p("pkcs11:object=my-key;type=private?pin-source=file:/etc/token");
        assert_eq!(u.pin_source.as_deref(), Some("file:/etc/token"));
        let u = p("pkcs11:token=The%20Software%20PKCS%2311%20Softtoken;\
                   manufacturer=Snake%20Oil,%20Inc.;model=1.0;object=my-certificate;\
                   type=cert;id=%69%95%3E%5C%F4%BD%EC%91;serial=\
                   ?pin-source=file:/etc/token_pin");
        assert_eq!(u.token.as_deref(), Some("The Software PKCS#11 Softtoken"));
        assert_eq!(u.manufacturer.as_deref(), Some("Snake Oil, Inc."));
        assert_eq!(u.serial.as_deref(), Some(""));
        assert_eq!(
            u.id,
            Some(vec![0x69, 0x95, 0x3e, 0x5c, 0xf4, 0xbd, 0xec, 0x91])
        );
        assert_eq!(u.object_type, Some(ObjectType::Cert));
        let u = p("pkcs11:object=my-sign-key;type=private?module-name=mypkcs11");
        assert_eq!(u.module_name.as_deref(), Some("mypkcs11"));
        let u = p("pkcs11:object=my-sign-key;type=private\
                   ?module-path=/mnt/libmypkcs11.so.1");
        assert_eq!(u.module_path.as_deref(), Some("/mnt/libmypkcs11.so.1"));
        let u = p("pkcs11:token=Software%20PKCS%2311%20softtoken;\
                   manufacturer=Snake%20Oil,%20Inc.?pin-value=the-pin");
        assert_eq!(u.pin_value.as_deref().map(|s| s.as_str()), Some("the-pin"));
        let u = p("pkcs11:slot-description=Sun%20Metaslot");
        assert_eq!(u.slot_description.as_deref(), Some("Sun Metaslot"));
        let u = p("pkcs11:library-manufacturer=Snake%20Oil,%20Inc.;\
                   library-description=Soft%20Token%20Library;library-version=1.23");
        assert_eq!(u.library_version, Some((1, 23)));
        assert_eq!(u.library_description.as_deref(), Some("Soft Token Library"));
        let u = p("pkcs11:token=My%20token%25%20created%20by%20Joe;\
                   library-version=3;id=%01%02%03%Ba%dd%Ef%fe;object=my-key");
        assert_eq!(u.token.as_deref(), Some("My token% created by Joe"));
        assert_eq!(u.library_version, Some((3, 0)));
        assert_eq!(u.id, Some(vec![1, 2, 3, 0xba, 0xdd, 0xef, 0xfe]));
        let u = p("pkcs11:token=A%20name%20with%20a%20substring%20%25%3B;\
                   object=my-certificate;type=cert");
        assert_eq!(u.token.as_deref(), Some("A name with a substring %;"));
        let u = p(
            "pkcs11:token=Name%20with%20a%20small%20A%20with%20acute:%20%C3%A1;\
                   object=my-certificate;type=cert",
        );
        assert_eq!(
            u.token.as_deref(),
            Some("Name with a small A with acute: á")
        );
        let u = p("pkcs11:token=my-token;object=my-certificate;type=cert;\
                   x-vend-aaa=value-a?pin-source=file:/etc/token_pin&x-vend-bbb=value-b");
        assert_eq!(u.ignored, ["x-vend-aaa", "x-vend-bbb"]);
    }

    #[test]
    fn ids_are_bytes_and_write_back() {
        let u = p("pkcs11:id=%01%02");
        assert_eq!(u.id, Some(vec![1, 2]));
        assert_eq!(u.to_string(), "pkcs11:id=%01%02");
        let u = p("pkcs11:object=a%20b;id=%00%FF;token=t%3Bx?pin-source=env:P");
        assert_eq!(
            u.to_string(),
            "pkcs11:token=t%3Bx;object=a%20b;id=%00%FF?pin-source=env%3AP"
        );
        // What Display writes parses back to the same URI.
        assert_eq!(p(&u.to_string()), u);
        assert_eq!(p("pkcs11:slot-id=7").to_string(), "pkcs11:slot-id=7");
    }

    #[test]
    fn odd_characters() {
        let u = p("pkcs11:object=%E2%82%AC%20%3D%3B%3F%26%25;token=a:b@c!$'()*+,=");
        assert_eq!(u.object.as_deref(), Some("€ =;?&%"));
        assert_eq!(u.token.as_deref(), Some("a:b@c!$'()*+,="));
        assert_eq!(p(&u.to_string()), u);
        // A semicolon inside a query value is a character, `&` separates.
        let u = p("pkcs11:?pin-value=a;b&module-name=hsmux");
        assert_eq!(u.pin_value.as_deref().map(|s| s.as_str()), Some("a;b"));
        assert!(refused("pkcs11:object=a b").contains("percent-encoded"));
        assert!(refused("pkcs11:object=€").contains("percent-encoded"));
        assert!(refused("pkcs11:object=50%").contains("two hex digits"));
        assert!(refused("pkcs11:object=%G1").contains("two hex digits"));
        assert!(refused("pkcs11:object=%FF").contains("not UTF-8"));
        // Attribute names are case-insensitive; the scheme too.
        assert_eq!(p("PKCS11:Object=k").object.as_deref(), Some("k"));
    }

    #[test]
    fn unknown_repeated_and_misplaced_attributes() {
        let e = refused("pkcs11:object=a;colour=blue");
        assert!(e.contains("unknown attribute `colour`"), "{e}");
        assert!(refused("pkcs11:token=a;vendor-aaa=v").contains("unknown attribute"));
        assert!(refused("pkcs11:object=a;object=b").contains("given twice"));
        assert!(refused("pkcs11:id=%01;id=%01").contains("given twice"));
        assert!(refused("pkcs11:?pin-value=1&pin-value=2").contains("given twice"));
        assert!(refused("pkcs11:pin-value=1").contains("query"));
        assert!(refused("pkcs11:?object=k").contains("path"));
        assert!(refused("pkcs11:type=key").contains("not one of"));
        assert!(refused("pkcs11:slot-id=x").contains("not a number"));
        assert!(refused("pkcs11:object").contains("no `=`"));
        assert!(refused("pkcs:object=a").contains("not a pkcs11: URI"));
        // Vendor attributes: accepted, ignored, but not twice.
        let u = p("pkcs11:object=k;x-color=red?x-ttl=3");
        assert_eq!(u.ignored, ["x-color", "x-ttl"]);
        assert!(refused("pkcs11:x-a=1;x-a=2").contains("given twice"));
    }

    #[test]
    fn pin_value_is_not_shown_by_debug() {
        let u = p("pkcs11:object=k?pin-value=secret1234");
        assert!(!format!("{u:?}").contains("secret1234"));
    }

    #[test]
    fn configuration_key_names() {
        assert_eq!(key_name("seal-key").unwrap(), "seal-key");
        assert_eq!(key_name("pkcs11:object=seal-key").unwrap(), "seal-key");
        assert_eq!(
            key_name("pkcs11:object=k%2Dx;id=%01;type=secret-key").unwrap(),
            "k-x"
        );
        assert!(key_name("pkcs11:id=%01")
            .unwrap_err()
            .0
            .contains("no object="));
        assert!(key_name("pkcs11:token=t;object=k")
            .unwrap_err()
            .0
            .contains("only"));
        assert!(key_name("pkcs11:object=k;bogus=1")
            .unwrap_err()
            .0
            .contains("unknown"));
    }

    #[test]
    fn the_configuration_takes_uris_where_it_names_keys() {
        use crate::config::{BackendConfig, Config};
        let vault = "address='http://a'\nauth={method='token',token='t'}";
        let t = format!(
            "[[slot]]\nlabel='v'\nbackend='vault'\n{vault}\n\
             transit={{keys=['pkcs11:object=k%2D1;type=secret-key','plain']}}\n\
             [[slot]]\nlabel='s'\nbackend='soft'\npath='/x'\n[slot.seal]\nbackend='vault'\n\
             key='pkcs11:object=seal;id=%01'\n{vault}\n"
        );
        let c = Config::parse(&t, "t.toml").unwrap_or_else(|e| panic!("{}", e.0));
        let BackendConfig::Vault(v) = &c.slots[0].backend else {
            panic!("vault")
        };
        assert_eq!(v.keys, ["k-1", "plain"]);
        let BackendConfig::Soft { seal: Some(s), .. } = &c.slots[1].backend else {
            panic!("seal")
        };
        assert_eq!(s.key, "seal");
        let bad = t.replace("object=seal;id=%01", "object=seal;colour=x");
        let e = Config::parse(&bad, "t.toml").unwrap_err().0;
        assert!(
            e.contains("[slot.seal]: key `key`") && e.contains("unknown attribute"),
            "{e}"
        );
    }
}
