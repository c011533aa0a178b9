//! The project's markdown holds together: every relative link of the README, the
//! architecture notes, the wire contract's notes and `docs/` leads to a file, and each
//! `#anchor` to a heading in it, made as GitHub makes them. (The README's commands are run by
//! `replay-cli/tests/readme.rs`.)

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is inside the workspace")
        .to_owned()
}

/// The markdown files whose links are checked: the README, the architecture notes, the wire
/// contract's notes and every file of `docs/`.
fn documents() -> Vec<PathBuf> {
    let root = workspace();
    let mut files: Vec<PathBuf> = ["README.md", "ARCHITECTURE.md", "proto/README.md"]
        .iter()
        .map(|f| root.join(f))
        .collect();
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

#[test]
fn every_relative_link_in_the_readme_and_docs_leads_somewhere() {
    let root = workspace();
    let mut problems = Vec::new();
    let mut checked = 0;
    for file in documents() {
        let text = std::fs::read_to_string(&file).unwrap();
        let (links, found) = link_problems(&root, &file, &text);
        checked += links;
        problems.extend(found);
    }
    assert!(
        checked >= 20,
        "only {checked} links found: is the parser right?"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_link_to_a_missing_file_or_heading_is_a_problem() {
    let root = workspace();
    let text = "[a](missing.md) [b](metrics.md#no-such-heading) [c](metrics.md#archive) \
                [d](#here) [e](https://example.org/x) `[f](code.md)`\n\n## Here\n";
    let (checked, problems) = link_problems(&root, &root.join("docs/new.md"), text);
    assert_eq!(checked, 4, "{problems:?}");
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].contains("`missing.md`: no such file"),
        "{problems:?}"
    );
    assert!(problems[1].contains("#no-such-heading"), "{problems:?}");
}

/// The relative links of `text` (the file `file`) that lead nowhere: how many it checked,
/// and the problems.
fn link_problems(root: &Path, file: &Path, text: &str) -> (usize, Vec<String>) {
    let shown = file
        .strip_prefix(root)
        .unwrap_or(file)
        .display()
        .to_string();
    let mut problems = Vec::new();
    let mut checked = 0;
    for (line, target) in links(text) {
        if target.contains("://") || target.starts_with("mailto:") {
            continue;
        }
        checked += 1;
        let (path, anchor) = target.split_once('#').unwrap_or((&target, ""));
        let (linked, linked_text) = if path.is_empty() {
            (file.to_owned(), Some(text.to_owned()))
        } else {
            let linked = normalise(&file.parent().unwrap().join(path));
            let linked_text = std::fs::read_to_string(&linked).ok();
            (linked, linked_text)
        };
        let missing = !path.is_empty() && (!linked.starts_with(root) || !linked.exists());
        if missing {
            problems.push(format!("{shown}:{line}: `{target}`: no such file"));
            continue;
        }
        if anchor.is_empty() {
            continue;
        }
        let headings = linked_text.map(|t| anchors(&t)).unwrap_or_default();
        if !headings.iter().any(|h| h == anchor) {
            problems.push(format!(
                "{shown}:{line}: `{target}`: no heading makes #{anchor} (there are: {})",
                headings.join(", ")
            ));
        }
    }
    (checked, problems)
}

/// `a/./b/../c` as `a/c`, without touching the disk.
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Lines outside fenced code blocks, numbered from 1.
fn prose(markdown: &str) -> Vec<(usize, &str)> {
    let mut in_code = false;
    let mut lines = Vec::new();
    for (index, line) in markdown.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        } else if !in_code {
            lines.push((index + 1, line));
        }
    }
    lines
}

/// Each `[text](target)` and `![alt](target)`: its line and target.
fn links(markdown: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (line, text) in prose(markdown) {
        // Inline code is not a link.
        let text: String = text
            .split('`')
            .enumerate()
            .filter(|(i, _)| i % 2 == 0)
            .map(|(_, part)| part)
            .collect();
        let mut rest = text.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            let target = after[..end].split_whitespace().next().unwrap_or("");
            found.push((line, target.trim_matches(['<', '>']).to_owned()));
            rest = &after[end..];
        }
    }
    found
}

/// The anchors GitHub makes of a file's headings: lower case, punctuation dropped, spaces as
/// hyphens, `-1`, `-2`... after a repeated one.
fn anchors(markdown: &str) -> Vec<String> {
    let mut made = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (_, line) in prose(markdown) {
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let slug: String = line[hashes..]
            .trim()
            .to_lowercase()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .collect();
        let repeats = seen.entry(slug.clone()).or_default();
        *repeats += 1;
        made.push(if *repeats == 1 {
            slug
        } else {
            format!("{slug}-{}", *repeats - 1)
        });
    }
    made
}

#[test]
fn anchors_are_made_as_github_makes_them() {
    let made = anchors(
        "# Title\n## Kafka timeouts, and why\n## `retrace dev` on a real Kafka\n## Title\n\
         ```sh\n# not a heading\n```\n#nope\n",
    );
    assert_eq!(
        made,
        [
            "title",
            "kafka-timeouts-and-why",
            "retrace-dev-on-a-real-kafka",
            "title-1"
        ]
    );
}
