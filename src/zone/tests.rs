use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use super::*;

static N: AtomicU32 = AtomicU32::new(0);

/// A temp directory with the given files, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(files: &[(&str, &str)]) -> Self {
        let p = std::env::temp_dir().join(format!(
            "gslb-zone-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        for (name, text) in files {
            let f = p.join(name);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, text).unwrap();
        }
        Self(p)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn load(files: &[(&str, &str)]) -> Result<ZoneSet, ZoneError> {
    let d = Dir::new(files);
    ZoneSet::load_dir(&d.0)
}

const HEAD: &str =
    "$TTL 300\n@ IN SOA ns1 hostmaster 1 7200 3600 1209600 60\n@ NS ns1\nns1 A 192.0.2.53\n";

fn w(name: &str) -> Vec<u8> {
    wire::from_dotted(name).unwrap()
}

#[test]
fn loads_a_zone() {
    let zs = load(&[(
        "example.test.zone",
        "; comment\n$TTL 1h\n$ORIGIN example.test.\n\
         @ 3600 IN SOA ns1 hostmaster ( 2024010101 ; serial\n 7200 3600 1209600\n 60 )\n\
         \tNS ns1\n\
         \tNS ns2.example.test.\n\
         ns1 A 192.0.2.1\n\
         ns1 AAAA 2001:db8::1\n\
         ns2 A 192.0.2.2\n\
         WWW 120 A 192.0.2.10\n\
         \t A 192.0.2.11\n\
         \t A 192.0.2.11\n\
         a.b.c TXT \"hello ; world\" \"(x)\"\n\
         alias CNAME www\n\
         mail MX 10 @\n\
         sub NS ns.sub\n\
         ns.sub A 192.0.2.99\n\
         *.wild A 192.0.2.77\n",
    )])
    .unwrap();
    assert_eq!(zs.origins(), vec!["example.test"]);
    let z = zs.find(&w("x.example.test")).unwrap();
    assert_eq!(z.origin(), "example.test");
    let apex = z.node(&w("example.test")).unwrap();
    let soa = apex.rrset(rtype::SOA).unwrap();
    assert_eq!(soa.ttl, 3600);
    assert_eq!(z.negative_soa().ttl, 60);
    let ns = apex.rrset(rtype::NS).unwrap();
    assert_eq!((ns.ttl, ns.rdata.len()), (3600, 2));
    // Glue: ns1 has A and AAAA, ns2 an A.
    assert_eq!(ns.glue.len(), 2);
    assert_eq!(ns.glue[0].rrsets.len(), 2);
    let www = z.node(&w("www.example.test")).unwrap();
    let a = www.rrset(rtype::A).unwrap();
    assert_eq!(
        (a.ttl, a.rdata.len()),
        (120, 2),
        "duplicate dropped, TTL kept"
    );
    assert_eq!(&*a.rdata[0].wire, &[192, 0, 2, 10]);
    // Empty non-terminals exist, unknown names do not.
    assert!(z.node(&w("c.example.test")).unwrap().is_empty());
    assert!(z.node(&w("b.c.example.test")).is_some());
    assert!(z.node(&w("nope.example.test")).is_none());
    let cname = z
        .node(&w("alias.example.test"))
        .unwrap()
        .rrset(rtype::CNAME)
        .unwrap();
    assert_eq!(
        cname.rdata[0].target.as_deref(),
        Some(&w("www.example.test")[..])
    );
    let mx = z
        .node(&w("mail.example.test"))
        .unwrap()
        .rrset(rtype::MX)
        .unwrap();
    assert_eq!(&mx.rdata[0].wire[..2], &[0, 10]);
    assert_eq!(&mx.rdata[0].wire[2..], &w("example.test")[..]);
    assert_eq!(mx.rdata[0].names, [2, NO_NAME]);
    // Delegation.
    assert_eq!(z.delegation(&w("a.ns.sub.example.test")), Some(5));
    assert_eq!(z.delegation(&w("sub.example.test")), Some(0));
    assert_eq!(z.delegation(&w("www.example.test")), None);
    let sub_ns = z
        .node(&w("sub.example.test"))
        .unwrap()
        .rrset(rtype::NS)
        .unwrap();
    assert_eq!(sub_ns.glue.len(), 1);
    // Wildcards.
    let none = |_: &[u8]| false;
    assert!(z.wildcard(&w("x.wild.example.test"), none).is_some());
    assert!(z.wildcard(&w("y.x.wild.example.test"), none).is_some());
    assert!(z.wildcard(&w("z.c.example.test"), none).is_none());
    assert!(z.wildcard(&w("x.example.test"), none).is_none());
    // A name that exists outside the zone data (a NameService) is a closer encloser:
    // no synthesis below it.
    let x = w("x.wild.example.test");
    assert!(
        z.wildcard(&w("y.x.wild.example.test"), |n| n == &x[..])
            .is_none()
    );
    // TXT data.
    let txt = z
        .node(&w("a.b.c.example.test"))
        .unwrap()
        .rrset(rtype::TXT)
        .unwrap();
    assert_eq!(&*txt.rdata[0].wire, b"\x0dhello ; world\x03(x)");
}

#[test]
fn public_api() {
    let zs = load(&[
        (
            "gslb.example.zone",
            &format!("{HEAD}alias CNAME www\nwww A 192.0.2.1\nsub NS ns.sub\nns.sub A 192.0.2.2\n"),
        ),
        ("child.gslb.example.zone", HEAD),
        ("other.test.zone", HEAD),
        ("README", "not a zone"),
    ])
    .unwrap();
    assert_eq!(
        zs.origins(),
        vec!["child.gslb.example", "gslb.example", "other.test"]
    );
    assert_eq!(zs.zone_of("app.gslb.example"), Some("gslb.example"));
    assert_eq!(zs.zone_of("gslb.example"), Some("gslb.example"));
    assert_eq!(
        zs.zone_of("x.child.gslb.example"),
        Some("child.gslb.example")
    );
    assert_eq!(zs.zone_of("example"), None);
    assert_eq!(zs.zone_of("xgslb.example"), None);
    assert_eq!(zs.collision("alias.gslb.example"), Some(Collision::Cname));
    assert_eq!(
        zs.collision("sub.gslb.example"),
        Some(Collision::Delegation("sub.gslb.example".into()))
    );
    assert_eq!(
        zs.collision("a.b.sub.gslb.example"),
        Some(Collision::Delegation("sub.gslb.example".into()))
    );
    assert_eq!(zs.collision("app.gslb.example"), None);
    assert_eq!(zs.collision("www.gslb.example"), None);
    assert_eq!(zs.collision("gslb.example"), None);
}

#[test]
fn most_specific_zone_with_few_and_many_zones() {
    // Nested zones, listed in file order that is not depth order; with 3 zones
    // `find` compares apexes, with 7 it hashes suffixes: same answers.
    let few = [
        ("a.example.zone", HEAD),
        ("b.a.example.zone", HEAD),
        ("c.b.a.example.zone", HEAD),
    ];
    let mut many = few.to_vec();
    many.extend([
        ("x.test.zone", HEAD),
        ("y.x.test.zone", HEAD),
        ("ba.example.zone", HEAD),
        ("example.zone", HEAD),
    ]);
    let few = load(&few).unwrap();
    let many = load(&many).unwrap();
    assert!(!few.few.is_empty() && many.few.is_empty());
    for (name, in_few, in_many) in [
        ("a.example", Some("a.example"), Some("a.example")),
        ("z.a.example", Some("a.example"), Some("a.example")),
        ("b.a.example", Some("b.a.example"), Some("b.a.example")),
        (
            "z.c.b.a.example",
            Some("c.b.a.example"),
            Some("c.b.a.example"),
        ),
        ("xc.b.a.example", Some("b.a.example"), Some("b.a.example")),
        ("ba.example", None, Some("ba.example")),
        ("z.ba.example", None, Some("ba.example")),
        ("example", None, Some("example")),
        ("q.y.x.test", None, Some("y.x.test")),
        ("test", None, None),
        ("", None, None),
    ] {
        assert_eq!(few.zone_of(name), in_few, "{name}");
        assert_eq!(many.zone_of(name), in_many, "{name}");
    }
}

#[test]
fn origin_from_file_name_and_include() {
    let zs = load(&[
        (
            "Example.Org.zone",
            "$TTL 60\n@ SOA ns1 h 1 2 3 4 5\n NS ns1\n$INCLUDE inc/ns.inc\nafter A 192.0.2.9\n",
        ),
        (
            "inc/ns.inc",
            "$ORIGIN sub.example.org.\n@ NS ns1.example.org.\nx A 192.0.2.1\n",
        ),
    ])
    .unwrap();
    assert_eq!(zs.origins(), vec!["example.org"]);
    let z = zs.find(&w("example.org")).unwrap();
    // The include's $ORIGIN does not leak back.
    assert!(z.node(&w("after.example.org")).is_some());
    assert!(z.node(&w("x.sub.example.org")).is_some());
    // NS at sub.example.org (from the include) is a delegation.
    assert!(z.node(&w("sub.example.org")).unwrap().is_delegation());
}

#[test]
fn soa_minimum_when_no_ttl() {
    let zs = load(&[("t.zone", "@ SOA ns h 1 2 3 4 99\n NS ns\nns A 192.0.2.1\n")]).unwrap();
    let z = zs.find(&w("t")).unwrap();
    assert_eq!(z.node(&w("ns.t")).unwrap().rrset(rtype::A).unwrap().ttl, 99);
}

#[test]
fn errors_name_file_and_line() {
    let cases: &[(&str, &str, usize, &str)] = &[
        ("a.zone", "$TTL 60\n@ NS ns\nns A 192.0.2.1\n", 2, "no SOA"),
        (
            "a.zone",
            "$TTL 60\n\n@ SOA ns h 1 2 3 4 5\nns A 192.0.2.1\n",
            3,
            "no NS",
        ),
        (
            "a.zone",
            &format!("{HEAD}@ SOA ns h 2 2 3 4 5\n"),
            5,
            "second SOA",
        ),
        (
            "a.zone",
            &format!("{HEAD}sub SOA ns h 2 2 3 4 5\n"),
            5,
            "apex",
        ),
        (
            "a.zone",
            &format!("{HEAD}www.b. A 192.0.2.1\n"),
            5,
            "outside the zone a",
        ),
        (
            "a.zone",
            &format!("{HEAD}x A 192.0.2.1\nx CNAME y\n"),
            6,
            "CNAME and other data",
        ),
        (
            "a.zone",
            &format!("{HEAD}x CNAME y\n\nx TXT hi\n"),
            7,
            "CNAME and other data",
        ),
        (
            "a.zone",
            &format!("{HEAD}x CNAME y\nx CNAME z\n"),
            6,
            "second CNAME",
        ),
        (
            "a.zone",
            &format!("{HEAD}\n\nx A 192.0.2.300\n"),
            7,
            "bad A record",
        ),
        (
            "a.zone",
            &format!("{HEAD}x AAAA nope\n"),
            5,
            "bad AAAA record",
        ),
        (
            "a.zone",
            &format!("{HEAD}x BOGUS 1\n"),
            5,
            "unknown record type BOGUS",
        ),
        ("a.zone", &format!("{HEAD}x CH TXT hi\n"), 5, "only IN"),
        ("a.zone", &format!("{HEAD}x A\n"), 5, "A record has no data"),
        (
            "a.zone",
            &format!("{HEAD}x TXT\n"),
            5,
            "TXT record has no data",
        ),
        (
            "a.zone",
            &format!("{HEAD}x A 192.0.2.1 300\n"),
            5,
            "takes 1 field(s), found 2",
        ),
        (
            "a.zone",
            &format!("{HEAD}x MX 10\n"),
            5,
            "takes 2 field(s), found 1",
        ),
        (
            "a.zone",
            &format!("{HEAD}@ SOA ns h ( 1 2 3\n 4 )\n"),
            5,
            "takes 7 field(s), found 6",
        ),
        ("a.zone", &format!("{HEAD}x 60\n"), 5, "no type"),
        (
            "a.zone",
            &format!("{HEAD}x TXT \"open\n\n"),
            5,
            "unterminated",
        ),
        (
            "a.zone",
            &format!("{HEAD}x MX ( 10\n  mail\n"),
            5,
            "never closed",
        ),
        (
            "a.zone",
            &format!("{HEAD}$GENERATE 1-2 x$ A 1.2.3.$\n"),
            5,
            "unknown directive",
        ),
        ("a.zone", &format!("{HEAD}$TTL forever\n"), 5, "bad $TTL"),
        (
            "a.zone",
            &format!("{HEAD}$INCLUDE missing.inc\n"),
            5,
            "cannot read $INCLUDE",
        ),
        ("a.zone", " A 192.0.2.1\n", 1, "without an owner"),
        ("a.zone", "@ NS ns\n", 1, "no TTL"),
        (
            "a.zone",
            &format!("{HEAD}x MX 10 mail )\n"),
            5,
            "without a matching",
        ),
    ];
    for (file, text, line, msg) in cases {
        let err = load(&[(file, text)])
            .err()
            .unwrap_or_else(|| panic!("accepted: {text}"));
        assert_eq!(err.line, *line, "{text}\n=> {err}");
        assert!(err.file.ends_with(file), "{err}");
        assert!(err.message.contains(msg), "{text}\n=> {err}");
    }
}

#[test]
fn error_in_include_names_the_included_file() {
    let err = load(&[
        ("a.zone", &format!("{HEAD}$INCLUDE part.inc\n")),
        ("part.inc", "ok A 192.0.2.1\n\nbad A 999.0.0.1\n"),
    ])
    .err()
    .unwrap();
    assert!(err.file.ends_with("part.inc"), "{err}");
    assert_eq!(err.line, 3);
}

#[test]
fn duplicate_zones_rejected() {
    let err = load(&[("a.zone", HEAD), ("b.zone", &format!("$ORIGIN a.\n{HEAD}"))])
        .err()
        .unwrap();
    assert!(err.file.ends_with("b.zone"), "{err}");
    assert_eq!(err.line, 1);
    assert!(err.message.contains("already loaded"), "{err}");
}

#[test]
fn empty_dir_and_missing_dir() {
    assert!(load(&[]).unwrap().origins().is_empty());
    assert!(ZoneSet::load_dir(std::path::Path::new("/nonexistent/gslb/zones")).is_err());
}

#[test]
fn repo_example_zone_loads() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("zones");
    let zs = ZoneSet::load_dir(&dir).unwrap();
    assert!(zs.origins().contains(&"gslb.example".to_string()));
    assert_eq!(zs.collision("app.gslb.example"), None);
    assert_eq!(zs.collision("alias.gslb.example"), Some(Collision::Cname));
    assert_eq!(
        zs.collision("x.sub.gslb.example"),
        Some(Collision::Delegation("sub.gslb.example".into()))
    );
}
