//! The documentation stands alone: every file it links to or names is in the repository, and it
//! does not send readers to notes that are not.

use std::path::{Path, PathBuf};

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("meshmark-agent sits in the repository")
        .to_path_buf()
}

/// README.md and every page under docs/, with their text.
fn documents() -> Vec<(PathBuf, String)> {
    let root = repository();
    let mut paths = vec![root.join("README.md")];
    for entry in std::fs::read_dir(root.join("docs")).expect("docs/ exists") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "md") {
            paths.push(path);
        }
    }
    assert!(paths.len() > 3, "found the docs: {paths:?}");
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            (path, text)
        })
        .collect()
}

/// Targets of markdown links `[text](target)`, without any `#anchor`.
fn link_targets(text: &str) -> Vec<&str> {
    text.split("](")
        .skip(1)
        .filter_map(|rest| rest.split(')').next())
        .map(|target| target.split('#').next().unwrap_or(""))
        .filter(|target| !target.is_empty() && !target.contains("://"))
        .collect()
}

#[test]
fn every_link_resolves_to_a_file_in_the_repository() {
    let root = repository().canonicalize().unwrap();
    for (path, text) in documents() {
        let dir = path.parent().unwrap();
        for target in link_targets(&text) {
            let resolved = dir.join(target);
            let inside = resolved
                .canonicalize()
                .is_ok_and(|real| real.starts_with(&root));
            assert!(
                inside,
                "{}: link to {target} leads nowhere in the repository",
                path.display()
            );
        }
    }
}

#[test]
fn no_references_to_notes_outside_the_repository() {
    for (path, text) in documents() {
        // Relative links to other parts of the repository (`../deploy/...`) are fine: the link
        // test resolves every one of them inside it.
        for outside in ["DESIGN.md", "MESHMARK-SPEC", "shared/"] {
            assert!(
                !text.contains(outside),
                "{} refers to {outside}, which is not in the repository",
                path.display()
            );
        }
    }
}

#[test]
fn backquoted_repository_paths_exist() {
    let root = repository();
    for (path, text) in documents() {
        for quoted in text.split('`').skip(1).step_by(2) {
            let looks_like_path = (quoted.starts_with("docs/")
                || quoted.starts_with("meshmark-")
                || quoted.starts_with("xtask/"))
                && !quoted.contains(' ')
                && !quoted.contains('*');
            if looks_like_path {
                assert!(
                    root.join(quoted).exists(),
                    "{} names {quoted}, which does not exist",
                    path.display()
                );
            }
        }
    }
}
