//! Golden tests of the messages: each fixtures/config/NAME.json is validated and the rendered
//! diagnostics compared with NAME.expected. Re-bless with
//! `BLESS=1 cargo test -p eas-config --test golden` and review the diff.

mod common;

fn render(text: &str) -> String {
    match eas_config::parse_value(text) {
        Err(e) => format!("error: {e}\n"),
        Ok(v) => common::render(&eas_config::validate(&v)),
    }
}

#[test]
fn messages_match_golden_files() {
    let dir = common::root().join("fixtures/config");
    let bless = std::env::var_os("BLESS").is_some();
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 5,
        "golden cases missing in {}",
        dir.display()
    );
    let mut stale = Vec::new();
    for case in cases {
        let got = render(&std::fs::read_to_string(&case).unwrap());
        let expected_path = case.with_extension("expected");
        if bless {
            std::fs::write(&expected_path, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if got != want {
            stale.push(format!(
                "== {}\n-- expected:\n{want}-- got:\n{got}",
                case.display()
            ));
        }
    }
    assert!(
        stale.is_empty(),
        "{}\nre-bless with BLESS=1 if the new messages are right",
        stale.join("\n")
    );
}
