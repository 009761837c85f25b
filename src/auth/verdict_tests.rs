//! Every rule of SPEC §4a on header fields as the servers write them.

use super::*;
use crate::auth::headers::scan;
use crate::auth::settings::Alignment;

const MX: &str = "mx.example.nhs.test";
const LEEDS: &str = "leeds.nhs.test";
const SIG_B: &str = "AbCdEf12ghIJ+/kl==";

fn settings() -> AuthSettings {
    AuthSettings { trusted_authserv_ids: vec![MX.into()], ..AuthSettings::default() }
}

fn relaxed() -> AuthSettings {
    AuthSettings { alignment: Alignment::Relaxed, ..settings() }
}

/// A message whose header block is `headers` (one field a line) and a Leeds signature.
fn message(headers: &[&str]) -> Vec<u8> {
    let mut m = String::new();
    for h in headers {
        m.push_str(h);
        m.push_str("\r\n");
    }
    m.push_str(&format!(
        "DKIM-Signature: v=1; a=rsa-sha256; d={LEEDS}; s=sel;\r\n\th=from:subject; bh=x=; b=AbCdEf12\r\n\tghIJ+/kl==\r\n"
    ));
    m.push_str("From: ann@leeds.nhs.test\r\nSubject: IAPT Leeds\r\n\r\nbody\r\n");
    m.into_bytes()
}

fn verdict(headers: &[&str], s: &AuthSettings) -> Verification {
    decide(&scan(&message(headers)), LEEDS, s, None)
}

fn ar(body: &str) -> String {
    format!("Authentication-Results: {body}")
}

#[test]
fn a_trusted_dkim_pass_for_the_from_domain_verifies_and_names_its_signature() {
    let v = verdict(
        &[&ar(&format!("{MX}; dkim=pass (2048-bit key; unprotected) header.d={LEEDS} header.i=@{LEEDS} header.b=AbCdEf12"))],
        &settings(),
    );
    assert!(v.verified, "{v:?}");
    assert_eq!(v.method, Method::AuthenticationResults);
    assert_eq!(v.authserv_id.as_deref(), Some(MX));
    assert_eq!(v.aligned_domain.as_deref(), Some(LEEDS));
    assert_eq!(v.replay_key.as_deref(), Some(SIG_B), "the whole b= of the signature it names");
    assert!(
        v.evidence[0].starts_with("Authentication-Results (trusted): mx.example"),
        "{:?}",
        v.evidence
    );
    assert!(!v.temporary);
}

#[test]
fn trusted_ids_compare_case_insensitively_and_header_i_names_the_domain() {
    let v = verdict(
        &[&ar("MX.Example.NHS.test; dkim=pass header.i=@Leeds.NHS.test header.s=sel")],
        &settings(),
    );
    assert!(v.verified, "{v:?}");
    assert_eq!(v.replay_key.as_deref(), Some(SIG_B), "found by domain and selector");
}

#[test]
fn an_untrusted_authserv_id_counts_for_nothing() {
    let v = verdict(&[&ar(&format!("evil.example; dkim=pass header.d={LEEDS}"))], &settings());
    assert!(!v.verified);
    assert_eq!(v.method, Method::None);
    assert_eq!(v.authserv_id, None);
    assert_eq!(
        v.reason,
        "no Authentication-Results from a trusted server; the message is DKIM-signed but \
         iapt-intake does not check signatures itself ([auth] verify_dkim is off)"
    );
    assert!(v.evidence[0].contains("ignored: evil.example is not trusted"), "{:?}", v.evidence);
}

#[test]
fn microsoft_365_without_authserv_id_is_never_trusted() {
    let v = verdict(
        &[&ar(&format!("spf=pass (sender IP is 1.2.3.4) smtp.mailfrom={LEEDS}; dkim=pass (signature was verified) header.d={LEEDS};dmarc=pass action=none header.from={LEEDS};compauth=pass reason=100"))],
        &relaxed(),
    );
    assert!(!v.verified);
    assert!(v.evidence[0].contains("it names no authserv-id"), "{:?}", v.evidence);
}

#[test]
fn a_forged_trusted_result_below_the_real_one_is_ignored() {
    let v = verdict(
        &[
            &ar(&format!(
                "{MX}; dkim=fail reason=\"signature verification failed\" header.d={LEEDS}"
            )),
            "Received: from attacker.example",
            &ar(&format!("{MX}; dkim=pass header.d={LEEDS}")),
        ],
        &settings(),
    );
    assert!(!v.verified, "{v:?}");
    assert!(
        v.reason.starts_with(&format!(
            "the receiving server {MX} reported dkim=fail for {LEEDS} (signature verification failed)"
        )),
        "{}",
        v.reason
    );
    assert!(v.evidence[1].contains("ignored: below the trusted one"), "{:?}", v.evidence);
}

#[test]
fn an_untrusted_field_above_the_trusted_one_does_not_hide_it() {
    let v = verdict(
        &[
            &ar("relay.example; dkim=fail header.d=x.test"),
            &ar(&format!("{MX}; dkim=pass header.d={LEEDS}")),
        ],
        &settings(),
    );
    assert!(v.verified, "{v:?}");
}

#[test]
fn an_unreadable_trusted_field_is_not_passed_over_for_one_below_it() {
    let long = format!("{MX}; dkim=pass header.d={LEEDS} {}", "x".repeat(20_000));
    let v = verdict(&[&ar(&long), &ar(&format!("{MX}; dkim=pass header.d={LEEDS}"))], &settings());
    assert!(!v.verified, "{v:?}");
    assert!(v.reason.contains("could not be read"), "{}", v.reason);
    assert!(v.evidence.iter().all(|l| l.chars().count() <= 401), "evidence lines are capped");
}

#[test]
fn cross_organisation_dkim_fails_strict_and_passes_relaxed() {
    let field = ar(&format!("{MX}; dkim=pass header.d=bradford.nhs.test"));
    let strict = verdict(&[&field], &settings());
    assert!(!strict.verified);
    assert_eq!(
        strict.reason,
        format!(
            "the receiving server {MX} reported DKIM passed for bradford.nhs.test, which is not \
                 the From domain {LEEDS} (strict alignment)"
        )
    );
    let relaxed = verdict(&[&field], &relaxed());
    assert!(relaxed.verified, "nhs.test is the organisational domain of both");
    assert_eq!(relaxed.aligned_domain.as_deref(), Some("bradford.nhs.test"));
    assert_eq!(relaxed.replay_key, None, "the message carries no bradford signature");
}

#[test]
fn dmarc_pass_counts_only_under_relaxed_alignment() {
    let field = ar(&format!("{MX}; dkim=none; dmarc=pass (p=none dis=none) header.from={LEEDS}"));
    let strict = verdict(&[&field], &settings());
    assert!(!strict.verified);
    assert!(
        strict.reason.contains("counts only with [auth] alignment = \"relaxed\""),
        "{}",
        strict.reason
    );
    let loose = verdict(&[&field], &relaxed());
    assert!(loose.verified);
    assert_eq!(loose.aligned_domain.as_deref(), Some(LEEDS));
    let other = ar(&format!("{MX}; dmarc=pass header.from=bradford.nhs.test"));
    assert!(!verdict(&[&other], &relaxed()).verified, "dmarc for another From domain");
}

#[test]
fn no_evidence_at_all() {
    let none = decide(&scan(b"From: ann@leeds.nhs.test\r\n\r\nhi"), LEEDS, &settings(), None);
    assert!(!none.verified);
    assert_eq!(
        none.reason,
        "no Authentication-Results from a trusted server and no DKIM signature"
    );
    let unconfigured =
        decide(&scan(b"From: a@leeds.nhs.test\r\n\r\n"), LEEDS, &AuthSettings::default(), None);
    assert!(unconfigured.reason.starts_with(
        "no Authentication-Results is trusted ([auth] trusted_authserv_ids is empty)"
    ));
    let checked_nothing = verdict(&[&ar(&format!("{MX}; none"))], &settings());
    assert!(checked_nothing.reason.contains("checked nothing"), "{}", checked_nothing.reason);
}

fn outcome(domain: &str, result: DkimResult, reason: Option<&str>) -> DkimOutcome {
    DkimOutcome {
        domain: domain.into(),
        selector: "sel".into(),
        result,
        reason: reason.map(str::to_string),
        b: SIG_B.into(),
    }
}

fn own(outcomes: &[DkimOutcome], s: &AuthSettings) -> Verification {
    let s = AuthSettings { verify_dkim: true, ..s.clone() };
    decide(&scan(&message(&[])), LEEDS, &s, Some(outcomes))
}

#[test]
fn our_own_dkim_pass_for_the_from_domain_verifies() {
    let v = own(&[outcome(LEEDS, DkimResult::Pass, None)], &settings());
    assert!(v.verified);
    assert_eq!(v.method, Method::Dkim);
    assert_eq!(v.replay_key.as_deref(), Some(SIG_B));
    assert_eq!(v.reason, format!("the DKIM signature of {LEEDS} verified"));
    assert_eq!(v.evidence, [format!("our DKIM check: d={LEEDS} s=sel: pass")]);
}

#[test]
fn our_own_dkim_failures_say_why() {
    let body = own(
        &[outcome(
            LEEDS,
            DkimResult::Neutral,
            Some("the body was changed after signing (body hash mismatch)"),
        )],
        &settings(),
    );
    assert!(!body.verified);
    assert!(body.reason.ends_with(&format!(
        "the DKIM signature of {LEEDS} did not verify: the body was changed after signing (body hash mismatch)"
    )), "{}", body.reason);
    let other = own(&[outcome("other.nhs.test", DkimResult::Pass, None)], &settings());
    assert!(!other.verified);
    assert!(
        other.reason.ends_with(&format!(
        "DKIM passed for other.nhs.test, which is not the From domain {LEEDS} (strict alignment)"
    )),
        "{}",
        other.reason
    );
    assert!(own(&[outcome("bradford.nhs.test", DkimResult::Pass, None)], &relaxed()).verified);
    let unsigned = own(&[], &settings());
    assert_eq!(
        unsigned.reason,
        "no Authentication-Results from a trusted server and no DKIM signature"
    );
}

#[test]
fn a_temporary_dns_failure_is_not_verified_for_now() {
    let v = own(
        &[outcome(LEEDS, DkimResult::TempError, Some("no answer from DNS within 5 s"))],
        &settings(),
    );
    assert!(!v.verified && v.temporary, "{v:?}");
    assert!(v.reason.contains("could not be fetched for now"), "{}", v.reason);
    let elsewhere = own(&[outcome("other.nhs.test", DkimResult::TempError, None)], &settings());
    assert!(!elsewhere.temporary, "an unaligned signature would not verify anyway");
    let mta = verdict(&[&ar(&format!("{MX}; dkim=temperror header.d={LEEDS}"))], &settings());
    assert!(mta.temporary);
}

#[test]
fn a_trusted_failure_with_our_own_pass_still_verifies_by_dkim() {
    let s = AuthSettings { verify_dkim: true, ..settings() };
    let fields = scan(&message(&[&ar(&format!("{MX}; dkim=fail header.d={LEEDS}"))]));
    let v = decide(&fields, LEEDS, &s, Some(&[outcome(LEEDS, DkimResult::Pass, None)]));
    assert!(v.verified);
    assert_eq!((v.method, v.authserv_id.as_deref()), (Method::Dkim, Some(MX)));
    let unavailable = decide(&fields, LEEDS, &s, None);
    assert!(
        unavailable.reason.ends_with("our own DKIM check was not available"),
        "{}",
        unavailable.reason
    );
}

#[test]
fn evidence_is_one_clean_capped_line_each() {
    let field = ar(&format!("{MX}; dkim=fail\r\n\t(\u{202e}evil\u{200b} \u{7}) header.d={LEEDS}"));
    let v = verdict(&[field.as_str(); 12], &settings());
    assert_eq!(v.evidence.len(), 8);
    assert!(
        v.evidence.iter().all(|l| !l.contains(['\r', '\n', '\t', '\u{202e}', '\u{200b}', '\u{7}'])),
        "{:?}",
        v.evidence
    );
}

#[test]
fn the_verdict_serialises_as_the_store_keeps_it() {
    let v =
        verdict(&[&ar(&format!("{MX}; dkim=pass header.d={LEEDS} header.b=AbCd"))], &settings());
    let json = serde_json::to_value(&v).expect("serialises");
    assert_eq!(json["method"], "authentication-results");
    assert_eq!(json["verified"], true);
    let back: Verification = serde_json::from_value(json).expect("reads back");
    assert_eq!(back, v);
    assert_eq!(serde_json::to_value(DkimResult::TempError).expect("json"), "temperror");
}
