//! The parser on headers as real servers write them, and on hostile ones.

use super::*;

fn ok(value: &str) -> AuthResults {
    parse(value).unwrap_or_else(|e| panic!("{value:?} did not parse: {e}"))
}

fn find<'a>(ar: &'a AuthResults, method: &str) -> &'a MethodResult {
    ar.results.iter().find(|r| r.method == method).unwrap_or_else(|| panic!("no {method}"))
}

#[test]
fn microsoft_365_without_authserv_id_reads_every_result() {
    let ar =
        ok("spf=pass (sender IP is 40.107.22.54)\r\n smtp.mailfrom=leeds.nhs.test; dkim=pass\r\n \
         (signature was verified) header.d=leeds.nhs.test;dmarc=pass action=none\r\n \
         header.from=leeds.nhs.test;compauth=pass reason=100");
    assert_eq!(ar.authserv_id, None, "Microsoft writes no authserv-id");
    let methods: Vec<&str> = ar.results.iter().map(|r| r.method.as_str()).collect();
    assert_eq!(methods, ["spf", "dkim", "dmarc", "compauth"]);
    assert_eq!(find(&ar, "spf").prop("smtp", "mailfrom"), Some("leeds.nhs.test"));
    assert_eq!(find(&ar, "dkim").result, "pass");
    assert_eq!(find(&ar, "dkim").prop("header", "d"), Some("leeds.nhs.test"));
    assert_eq!(find(&ar, "dmarc").prop("", "action"), Some("none"));
    assert_eq!(find(&ar, "dmarc").prop("header", "from"), Some("leeds.nhs.test"));
    assert_eq!(find(&ar, "compauth").reason.as_deref(), Some("100"));
    assert_eq!(ar.skipped, 0);
}

#[test]
fn gmail_with_at_domain_and_base64_prefix() {
    let ar = ok("mx.google.com;\r\n       dkim=pass header.i=@leeds.nhs.test header.s=20230601 \
         header.b=Ab+/Cd9=;\r\n       spf=pass (google.com: domain of ann@leeds.nhs.test designates \
         209.85.220.41 as permitted sender) smtp.mailfrom=ann@leeds.nhs.test;\r\n       \
         dmarc=pass (p=NONE sp=QUARANTINE dis=NONE) header.from=leeds.nhs.test");
    assert_eq!(ar.authserv_id.as_deref(), Some("mx.google.com"));
    let dkim = find(&ar, "dkim");
    assert_eq!(dkim.prop("header", "i"), Some("@leeds.nhs.test"));
    assert_eq!(dkim.prop("header", "s"), Some("20230601"));
    assert_eq!(dkim.prop("header", "b"), Some("Ab+/Cd9="));
    assert_eq!(find(&ar, "spf").prop("smtp", "mailfrom"), Some("ann@leeds.nhs.test"));
    assert_eq!(find(&ar, "dmarc").prop("header", "from"), Some("leeds.nhs.test"));
}

#[test]
fn opendkim_and_opendmarc() {
    let ar = ok(" mx.example.nhs.test; dkim=pass (2048-bit key; unprotected)\r\n\t\
         header.d=leeds.nhs.test header.i=@leeds.nhs.test header.a=rsa-sha256\r\n\t\
         header.s=sel header.b=AbCd");
    assert_eq!(ar.authserv_id.as_deref(), Some("mx.example.nhs.test"));
    let dkim = &ar.results[0];
    assert_eq!(
        (dkim.method.as_str(), dkim.result.as_str(), dkim.prop("header", "a")),
        ("dkim", "pass", Some("rsa-sha256"))
    );
    assert_eq!(dkim.prop("header", "b"), Some("AbCd"));
    let dmarc = ok("mx.example.nhs.test; dmarc=pass (p=none dis=none) header.from=leeds.nhs.test");
    assert_eq!(dmarc.results[0].prop("header", "from"), Some("leeds.nhs.test"));
    let quoted =
        ok("host; dkim=fail reason=\"signature verification failed\" header.b=\"mj+deT/Q\"");
    assert_eq!(quoted.results[0].reason.as_deref(), Some("signature verification failed"));
    assert_eq!(quoted.results[0].prop("header", "b"), Some("mj+deT/Q"));
}

#[test]
fn version_none_and_method_version() {
    let ar = ok("mx.microsoft.com 1; spf=pass smtp.mailfrom=x.test");
    assert_eq!((ar.authserv_id.as_deref(), ar.version), (Some("mx.microsoft.com"), Some(1)));
    let none = ok("example.org 1; none");
    assert!(none.none && none.results.is_empty());
    let v = ok("example.com; dkim/1=pass header.d=a.test");
    assert_eq!(v.results[0].method_version, Some(1));
    let quoted_id = ok("\"odd id\" ; auth=pass smtp.auth=ann");
    assert_eq!(quoted_id.authserv_id.as_deref(), Some("odd id"));
}

#[test]
fn results_in_comments_or_quotes_are_not_results() {
    let ar = ok("evil.test (dkim=pass header.d=leeds.nhs.test; (nested; dkim=pass)); dkim=fail \
         (x=\"y; dkim=pass\") header.d=leeds.nhs.test");
    assert_eq!(ar.results.len(), 1);
    assert_eq!(ar.results[0].result, "fail");
    let quoted = ok("host; dkim=fail reason=\"; dkim=pass header.d=leeds.nhs.test\"");
    assert_eq!(quoted.results.len(), 1, "{quoted:?}");
    assert_eq!(quoted.results[0].result, "fail");
}

#[test]
fn junk_between_results_is_skipped_and_counted() {
    // As an Outlook.com forwarder wrote it (the domain alone between two results).
    let ar = ok("spf=pass (sender IP is 1.2.3.4) smtp.mailfrom=e.x.test; alum.mit.test; \
         dkim=pass (signature was verified) header.d=x.test;alum.mit.test; dmarc=pass");
    let methods: Vec<&str> = ar.results.iter().map(|r| r.method.as_str()).collect();
    assert_eq!(methods, ["spf", "dkim", "dmarc"]);
    assert_eq!(ar.skipped, 2);
    let trailing = ok("host; dkim=pass header.d=a.test;");
    assert_eq!(trailing.results.len(), 1);
}

#[test]
fn unreadable_fields_are_errors() {
    assert_eq!(parse(""), Err(ParseError::Empty));
    assert_eq!(parse("  (only a comment) "), Err(ParseError::Empty));
    assert_eq!(parse("; dkim=pass"), Err(ParseError::NoAuthservId));
    let long = format!("host; dkim=pass header.d={}", "a".repeat(MAX_LEN));
    assert_eq!(parse(&long), Err(ParseError::TooLong));
}

#[test]
fn hostile_input_never_panics_and_stays_bounded() {
    let cases = [
        "(".repeat(10_000),
        ")".repeat(10_000),
        "\"".to_string(),
        "host; dkim=\"".to_string(),
        "host; dkim=pass header.d=\"unterminated".to_string(),
        "host; dkim=pass (unterminated comment header.d=a".to_string(),
        "host; =; ==; .=.; a.=b; a.b=; /; dkim/=pass; dkim/x=pass".to_string(),
        "host;\\".to_string(),
        "host; dkim=pass header.d=\\".to_string(),
        "h\u{0}st; dk\u{202e}im=pass header.d=é.test".to_string(),
        format!("host{}", "; dkim=pass".repeat(1000)),
        format!("host; dkim=pass {}", "header.d=a ".repeat(1000)),
    ];
    for case in &cases {
        if let Ok(ar) = parse(case) {
            assert!(ar.results.len() <= MAX_RESULTS);
            assert!(ar.results.iter().all(|r| r.properties.len() <= MAX_PROPERTIES));
        }
    }
    let many = ok(&format!("host{}", "; dkim=pass".repeat(1000)));
    assert_eq!((many.results.len(), many.skipped), (MAX_RESULTS, 1000 - MAX_RESULTS));
    // Every prefix of a real header parses or fails cleanly.
    let real =
        "mx.example.nhs.test; dkim=pass (2048-bit key; unprotected) header.d=leeds.nhs.test \
                header.b=\"Ab+/\"; dmarc=pass (p=none) header.from=leeds.nhs.test";
    for end in 0..=real.len() {
        let _ = parse(&real[..end]);
    }
}

#[test]
fn random_strings_of_grammar_characters_never_panic() {
    // A fixed xorshift stream over the characters the grammar cares about: deterministic, so a
    // failure reproduces; 20,000 strings take a few milliseconds.
    const ALPHABET: &[u8] = b" \t\r\n;=.()/\\\"@+-_aZ09dkimpassfailheader";
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..20_000 {
        let len = (next() % 80) as usize;
        let s: String =
            (0..len).map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize] as char).collect();
        if let Ok(ar) = parse(&s) {
            assert!(ar.results.len() <= MAX_RESULTS);
        }
        let _ = crate::auth::signature::parse(&s);
    }
}
