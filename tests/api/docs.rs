//! The docs say what the code does: the settings table, `.env.example` and
//! `--help` against the one list of settings, the API reference against the
//! served OpenAPI document, the layout against the tree, and every link.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use presence::config::{SETTINGS, markdown_table};
use reqwest::Method;
use serde_json::Value;
use sqlx::PgPool;

use crate::helpers::spawn_app;
use crate::process::{presence, run};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|error| panic!("{path}: {error}"))
}

#[test]
fn the_configuration_page_holds_the_settings_table_exactly() {
    let table = markdown_table();
    assert!(
        read("docs/configuration.md").contains(&table),
        "docs/configuration.md must hold this table (src/config/settings.rs), verbatim:\n{table}"
    );
}

#[test]
fn env_example_lists_every_setting_once_with_its_default() {
    // `NAME=value`, or commented out (`# NAME=example`) for settings with no default.
    let mut listed: BTreeMap<String, (bool, String)> = BTreeMap::new();
    for line in read(".env.example").lines() {
        let (commented, assignment) = match line.strip_prefix("# ") {
            Some(rest) => (true, rest),
            None => (false, line),
        };
        let Some((name, value)) = assignment.split_once('=') else {
            continue;
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
            continue;
        }
        let earlier = listed.insert(name.to_owned(), (commented, value.to_owned()));
        assert!(earlier.is_none(), "{name} is listed twice in .env.example");
    }
    let names: BTreeSet<&String> = listed.keys().collect();
    let settings: BTreeSet<String> = SETTINGS.iter().map(|s| s.name.to_owned()).collect();
    assert_eq!(
        names,
        settings.iter().collect(),
        ".env.example against src/config/settings.rs"
    );
    for setting in SETTINGS {
        let (commented, value) = &listed[setting.name];
        if !commented {
            assert_eq!(
                value, setting.default,
                "{} in .env.example is set to other than its default",
                setting.name
            );
        }
    }
}

#[test]
fn help_lists_every_setting_with_its_default() {
    let output = run(presence().arg("--help"));
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for setting in SETTINGS {
        let default = if setting.default.is_empty() {
            "none"
        } else {
            setting.default
        };
        let line = format!("{} [default: {default}]", setting.name);
        assert!(
            help.contains(&line),
            "`presence --help` lacks {line:?}:\n{help}"
        );
    }
}

/// The sections of `docs/api.md` headed `` ### `METHOD /path` ``, by operation.
fn reference_sections() -> BTreeMap<String, String> {
    let page = read("docs/api.md");
    let mut sections = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for line in page.lines() {
        if line.starts_with('#') {
            if let Some((operation, text)) = current.take() {
                sections.insert(operation, text);
            }
            if let Some(operation) = line
                .strip_prefix("### `")
                .and_then(|rest| rest.strip_suffix('`'))
            {
                current = Some((operation.to_owned(), String::new()));
            }
        } else if let Some((_, text)) = &mut current {
            text.push_str(line);
            text.push('\n');
        }
    }
    if let Some((operation, text)) = current {
        sections.insert(operation, text);
    }
    sections
}

#[sqlx::test]
async fn the_api_reference_documents_every_operation_its_parameters_and_answers(pool: PgPool) {
    let app = spawn_app(pool).await;
    let document: Value = app
        .raw(Method::GET, "/openapi.json", &[], None)
        .await
        .json()
        .await
        .expect("JSON");
    let mut served = BTreeMap::new();
    for (path, operations) in document["paths"].as_object().expect("paths") {
        for (method, operation) in operations.as_object().expect("operations") {
            served.insert(
                format!("{} {path}", method.to_uppercase()),
                operation.clone(),
            );
        }
    }
    let sections = reference_sections();
    assert_eq!(
        sections.keys().collect::<BTreeSet<_>>(),
        served.keys().collect::<BTreeSet<_>>(),
        "docs/api.md's operations against /openapi.json's"
    );
    for (operation, described) in &served {
        let text = &sections[operation];
        for parameter in described["parameters"].as_array().into_iter().flatten() {
            let name = parameter["name"].as_str().expect("a name");
            if name == "If-None-Match" || operation.contains(&format!("{{{name}}}")) {
                // In the heading, or the conditional-polling header every read takes.
                continue;
            }
            assert!(
                text.contains(&format!("`{name}`")),
                "docs/api.md, {operation}: the parameter `{name}` is not described"
            );
        }
        let codes = described["responses"].as_object().expect("responses");
        for code in codes.keys() {
            let common = ["400", "401", "404", "500", "503"].contains(&code.as_str())
                && operation.contains("/api/");
            assert!(
                common || text.contains(&format!("`{code}")),
                "docs/api.md, {operation}: the answer {code} is not described"
            );
        }
    }
}

/// The paths a layout must list: the top level, `bench/`, `src/` and `src/`'s
/// folders (folders with a trailing `/`), leaving out what git ignores.
fn tree() -> BTreeSet<String> {
    let ignored = ["target", ".git", "node_modules", ".env", ".schemathesis"];
    let entries = |folder: &Path| -> Vec<(String, bool)> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(folder).expect("a folder") {
            let entry = entry.expect("an entry");
            let name = entry.file_name().to_string_lossy().into_owned();
            if !ignored.contains(&name.as_str()) {
                found.push((name, entry.path().is_dir()));
            }
        }
        found
    };
    let mut paths = BTreeSet::new();
    let mut add = |prefix: &str, folder: &Path| -> Vec<PathBuf> {
        let mut folders = Vec::new();
        for (name, is_dir) in entries(folder) {
            paths.insert(format!("{prefix}{name}{}", if is_dir { "/" } else { "" }));
            if is_dir {
                folders.push(folder.join(&name));
            }
        }
        folders
    };
    add("", root());
    add("bench/", &root().join("bench"));
    for folder in add("src/", &root().join("src")) {
        let name = folder.file_name().expect("a name").to_string_lossy();
        add(&format!("src/{name}/"), &folder);
    }
    paths
}

#[test]
fn the_layout_in_the_architecture_page_is_the_tree() {
    let page = read("docs/architecture.md");
    let layout = page
        .split("## Layout")
        .nth(1)
        .and_then(|section| section.split("```").nth(1))
        .expect("a code block under ## Layout");
    let listed: BTreeSet<String> = layout
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    let tree = tree();
    let missing: Vec<_> = tree.difference(&listed).collect();
    let gone: Vec<_> = listed.difference(&tree).collect();
    assert!(
        missing.is_empty() && gone.is_empty(),
        "docs/architecture.md's layout: not listed {missing:?}; listed but not there {gone:?}"
    );
}

/// A heading's anchor as GitHub makes it: lower case, spaces to `-`, other punctuation dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a Markdown page's headings (outside code blocks).
fn anchors(page: &str) -> BTreeSet<String> {
    let mut in_code = false;
    let mut found = BTreeSet::new();
    for line in page.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            found.insert(anchor(line.trim_start_matches('#')));
        }
    }
    found
}

#[test]
fn every_relative_link_of_the_docs_leads_somewhere() {
    let pages = [
        "README.md",
        "docs/api.md",
        "docs/architecture.md",
        "docs/configuration.md",
        "docs/operations.md",
        "docs/scaling.md",
        "docs/history.md",
        "docs/identity.md",
        "web/README.md",
        "bench/README.md",
        "bench/NOTES.md",
    ];
    let mut broken = Vec::new();
    for page in pages {
        let text = read(page);
        let folder = Path::new(page).parent().expect("a folder");
        for target in link_targets(&text) {
            if target.starts_with("http://") || target.starts_with("https://") {
                continue;
            }
            let (file, fragment) = target.split_once('#').unwrap_or((&target, ""));
            let linked = if file.is_empty() {
                page.to_owned()
            } else {
                let joined = folder.join(file);
                let normal: PathBuf = joined.components().fold(PathBuf::new(), |mut path, part| {
                    match part {
                        std::path::Component::ParentDir => {
                            path.pop();
                        }
                        other => path.push(other),
                    }
                    path
                });
                normal.to_string_lossy().into_owned()
            };
            if !root().join(&linked).exists() {
                broken.push(format!("{page}: {target} (no {linked})"));
                continue;
            }
            if !fragment.is_empty() && !anchors(&read(&linked)).contains(fragment) {
                broken.push(format!(
                    "{page}: {target} (no heading #{fragment} in {linked})"
                ));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// The targets of the Markdown links `[text](target)` in `text`.
fn link_targets(text: &str) -> Vec<String> {
    let mut links = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("](") {
        rest = &rest[start + 2..];
        if let Some(end) = rest.find(')') {
            let target = &rest[..end];
            if !target.contains(char::is_whitespace) {
                links.push(target.to_owned());
            }
            rest = &rest[end..];
        }
    }
    links
}
