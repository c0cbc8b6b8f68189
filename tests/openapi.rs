//! The OpenAPI document and its reading page, and schemathesis (from PyPI, installed by
//! `scripts/services`) run against a live server: no 5xx, and every answer's status, content
//! type and body as the document says.

mod common;

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use common::*;

/// A merchant with customers, a snapshot, an admin key and the campaign the document's
/// examples name, so schemathesis's example requests reach real data.
fn prepared(dir: &Path) -> (std::path::PathBuf, String) {
    let data = generated_merchant(dir, "300", "60");
    run_ok(&["run", "--data-dir", path_str(&data)]);
    run_ok(&[
        "campaign",
        "create",
        "--data-dir",
        path_str(&data),
        "--merchant",
        "m_bakery",
        "--name",
        "winback_nov",
        "--goal",
        "winback",
        "--channel",
        "webhook",
    ]);
    let key = create_key(&data, "m_bakery", "admin");
    (data, key)
}

#[test]
fn the_document_and_the_docs_page_are_served_from_the_binary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), &[]);
    let (status, doc) = server.get("/openapi.json");
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(
        doc["components"]["securitySchemes"]["merchant_key"]["scheme"],
        "bearer"
    );
    let recommendations =
        &doc["paths"]["/v1/merchants/{merchant_id}/users/{user_id}/recommendations"]["get"];
    assert!(
        recommendations["responses"]["200"]["content"]["application/json"].is_object(),
        "{recommendations}"
    );

    let page = server.get_text("/docs");
    assert!(page.contains("<rapi-doc") && page.contains("spec-url=\"/openapi.json\""));
    // Offline: nothing is loaded from another host.
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "{page}"
    );

    let mut response = Server::agent()
        .get(format!("{}/docs/rapidoc-min.js", server.base))
        .header("Accept-Encoding", "identity")
        .call()
        .expect("request");
    assert_eq!(response.status().as_u16(), 200);
    let mut script = String::new();
    response
        .body_mut()
        .as_reader()
        .read_to_string(&mut script)
        .expect("the script");
    assert!(script.contains("rapi-doc"), "RapiDoc's element is defined");
}

#[test]
fn schemathesis_finds_no_server_error_and_no_answer_off_the_schema() {
    let schemathesis = std::env::var("RECUR_SCHEMATHESIS").expect(
        "RECUR_SCHEMATHESIS is not set: run the tests through scripts/test, which installs schemathesis \
         (scripts/services install) and sets it",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, key) = prepared(dir.path());
    let server = Server::start(&data, &[]);
    let hooks = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis_hooks.py");
    let mut command = std::process::Command::new(&schemathesis);
    // Run where it may leave its cache (`.schemathesis/`): the test's directory, not the repository.
    command
        .current_dir(dir.path())
        .env("SCHEMATHESIS_HOOKS", &hooks)
        .env("NO_COLOR", "1")
        .args([
            "run",
            &format!("{}/openapi.json", server.base),
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            "--header",
            &format!("Authorization: Bearer {key}"),
            "--max-examples",
            "25",
            "--seed",
            "1",
            "--workers",
            "1",
            "--generation-database",
            "none",
        ]);
    let output = output_within(&mut command, Duration::from_secs(600), &["st", "run"]);
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // It really tested every operation.
    assert!(report.contains("Tested: 16"), "{report}");
}
