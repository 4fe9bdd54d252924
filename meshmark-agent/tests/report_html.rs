//! The HTML reports opened in a real browser (headless Chromium): no console errors, no
//! requests, the charts in the DOM with the expected number of marks, and every figure on the
//! page equal to the JSON's. Screenshots are kept under the target directory
//! (`target/tmp/meshmark-reports/`).

mod common;

use std::path::PathBuf;

use common::{
    agent_ok, browser, dom, exited_shell, json_of, node_processes, plain_app, scratch,
    with_latency, worked_app, worked_proxy, write_profile,
};
use serde_json::{json, Value};

/// Where screenshots and the pages they show are kept.
fn artefact(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("meshmark-reports");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// The worked example with latency histograms for the proxy and the application, and a few
/// dropped events.
fn mesh_profile() -> PathBuf {
    let path = scratch("html-mesh.json");
    let mut processes = vec![
        with_latency(worked_app(), &[(10, 60_000), (12, 40_000)]),
        with_latency(
            worked_proxy("envoy"),
            &[(9, 200_000), (11, 99_000), (20, 1_000)],
        ),
    ];
    processes.extend(node_processes());
    write_profile(&path, processes, json!({"event_ring_full": 3}));
    path
}

/// The same application without the mesh, and a process the other window lacks.
fn plain_profile() -> PathBuf {
    let path = scratch("html-plain.json");
    let mut processes = vec![with_latency(plain_app(), &[(10, 70_000), (11, 20_000)])];
    processes.extend(node_processes());
    processes.push(exited_shell());
    write_profile(&path, processes, json!({}));
    path
}

/// The text a figure of this format shows for `v`: the test's own rendering of the formats
/// whose rule is simple enough to state here.
fn expected_text(format: &str, v: f64) -> Option<String> {
    Some(match format {
        "score" => format!("{v:.1}"),
        "ratio" => format!("{v:.3}"),
        "int" => format!("{v:.0}"),
        "percent" => format!("{:.1}%", 100.0 * v),
        "ms" => format!("{:.1}ms", v / 1e6),
        "s" => format!("{:.1}s", v / 1e9),
        "delta-score" => format!("{v:+.1}"),
        "delta-ratio" => format!("{v:+.3}"),
        "delta-ms" => format!("{:+.1}ms", v / 1e6),
        _ => return None,
    })
}

/// Every element tied to the JSON shows the JSON's number; returns how many were checked.
fn figures_match_json(elements: &[dom::Element], doc: &Value) -> usize {
    let mut checked = 0;
    for e in elements {
        let Some(pointer) = e.attr("data-json") else {
            continue;
        };
        let at = doc.pointer(pointer);
        if e.attr("data-null").is_some() {
            assert!(
                at.is_none_or(Value::is_null),
                "{pointer} shows '-' but the JSON has {at:?}"
            );
            assert_eq!(e.text.trim(), "-", "{pointer}");
            checked += 1;
            continue;
        }
        let shown: f64 = e
            .attr("data-value")
            .unwrap_or_else(|| panic!("{pointer} has neither data-value nor data-null"))
            .parse()
            .unwrap();
        let json_value = at
            .and_then(Value::as_f64)
            .unwrap_or_else(|| panic!("{pointer} is not a number in the JSON: {at:?}"));
        assert_eq!(
            shown, json_value,
            "{pointer}: page {shown}, JSON {json_value}"
        );
        if e.has_class("fig") {
            let format = e.attr("data-format").unwrap_or("");
            if let Some(text) = expected_text(format, json_value) {
                assert_eq!(e.text, text, "{pointer} ({format})");
            } else {
                assert!(!e.text.trim().is_empty(), "{pointer} shows nothing");
            }
        }
        checked += 1;
    }
    checked
}

/// The marks of chart `name`, after checking the chart exists once and says how many it has.
fn marks<'a>(elements: &'a [dom::Element], name: &str) -> Vec<&'a dom::Element> {
    let charts: Vec<&dom::Element> = elements
        .iter()
        .filter(|e| e.tag == "svg" && e.attr("data-chart") == Some(name))
        .collect();
    assert_eq!(charts.len(), 1, "chart {name} is on the page once");
    let marks: Vec<&dom::Element> = elements
        .iter()
        .filter(|e| e.tag == "rect" && e.has_class("mark") && e.chart.as_deref() == Some(name))
        .collect();
    assert_eq!(
        charts[0].attr("data-bars"),
        Some(marks.len().to_string().as_str()),
        "chart {name} declares the marks it draws"
    );
    marks
}

fn count_where(values: impl Iterator<Item = Option<f64>>) -> usize {
    values.filter(|v| v.is_some_and(|v| v > 0.0)).count()
}

/// Pages of a PDF: its page objects (`/Type /Page`, not the `/Pages` tree nodes).
fn pdf_pages(pdf: &[u8]) -> usize {
    let text = String::from_utf8_lossy(pdf);
    text.matches("/Type /Page")
        .count()
        .saturating_sub(text.matches("/Type /Pages").count())
}

/// Opens the page and checks what every report page must satisfy; returns the elements.
fn open_clean(chromium: &std::path::Path, html: &std::path::Path, name: &str) -> Vec<dom::Element> {
    let shot = artefact(&format!("{name}.png"));
    let pdf = artefact(&format!("{name}.pdf"));
    let keep = browser::Keep {
        screenshot: Some(&shot),
        pdf: Some(&pdf),
    };
    let page = browser::open(chromium, html, keep);
    eprintln!(
        "{}: chromium took {:?}; screenshot {}; browser's own requests: {:?}",
        html.display(),
        page.elapsed,
        shot.display(),
        page.browser_requests
    );
    assert!(
        page.console.is_empty(),
        "console messages: {:#?}",
        page.console
    );
    assert!(
        page.requests.is_empty(),
        "the page made requests: {:#?}",
        page.requests
    );
    let png_bytes = std::fs::read(&shot).unwrap();
    assert!(
        png_bytes.starts_with(b"\x89PNG\r\n\x1a\n") && png_bytes.len() > 10_000,
        "the screenshot is a PNG with content ({} bytes)",
        png_bytes.len()
    );
    // Printable: Chromium lays it out on paper, over more than one page.
    let pdf_bytes = std::fs::read(&pdf).unwrap();
    assert!(pdf_bytes.starts_with(b"%PDF-"), "the print is a PDF");
    let pages = pdf_pages(&pdf_bytes);
    assert!(pages >= 2, "the report printed on {pages} page(s)");
    let elements = dom::elements(&page.dom);
    assert!(
        elements.iter().any(|e| e.tag == "meta"
            && e.attr("http-equiv") == Some("Content-Security-Policy")
            && e.attr("content")
                .is_some_and(|c| c.starts_with("default-src 'none'"))),
        "the page forbids every load"
    );
    for e in &elements {
        for attr in ["src", "href"] {
            assert!(
                e.attr(attr).is_none(),
                "<{} {attr}> on a self-contained page",
                e.tag
            );
        }
    }
    elements
}

#[test]
fn profile_report_in_chromium() {
    let Some(chromium) = browser::chromium_or_skip("profile_report_in_chromium") else {
        return;
    };
    let input = mesh_profile();
    let input = input.to_str().unwrap();
    let doc = json_of(&agent_ok(&["score", "--input", input, "--format", "json"]));
    let html = artefact("profile.html");
    agent_ok(&[
        "score",
        "--input",
        input,
        "--format",
        "html",
        "--output",
        html.to_str().unwrap(),
    ]);
    let elements = open_clean(&chromium, &html, "profile");

    let checked = figures_match_json(&elements, &doc);
    assert!(checked >= 60, "only {checked} figures on the page");
    let score = elements
        .iter()
        .find(|e| e.attr("data-json") == Some("/meshmark/score"))
        .expect("the node's score is on the page");
    assert_eq!(score.text, "56.5");

    let mark = &doc["meshmark"];
    let mues: usize = mark["classes"]
        .as_object()
        .unwrap()
        .values()
        .map(|c| c["mues"].as_object().unwrap().len())
        .sum();
    assert_eq!(mues, 5);
    assert_eq!(marks(&elements, "mues").len(), mues);
    for (chart, path) in [
        ("roles-cpu", "/cpu_ns"),
        ("roles-bytes", "/net_bytes"),
        ("roles-syscalls", "/syscalls/count"),
    ] {
        let expected = count_where(
            mark["sums"]
                .as_object()
                .unwrap()
                .values()
                .map(|s| s.pointer(path).and_then(Value::as_f64)),
        );
        assert_eq!(marks(&elements, chart).len(), expected, "{chart}");
    }
    assert_eq!(
        marks(&elements, "roles-cpu").len(),
        3,
        "proxy, app and node used CPU"
    );
    assert_eq!(
        marks(&elements, "pods").len(),
        doc["pods"].as_array().unwrap().len()
    );
    for role in ["proxy", "app"] {
        let buckets = mark["sums"][role]["syscalls"]["latency_log2_ns"]
            .as_array()
            .unwrap()
            .len();
        assert_eq!(
            marks(&elements, &format!("latency-{role}")).len(),
            buckets,
            "{role}"
        );
    }
    assert_eq!(marks(&elements, "latency-proxy").len(), 3);

    let rows = elements
        .iter()
        .filter(|e| e.tag == "tr" && e.attr("data-pid").is_some());
    assert_eq!(rows.count(), 4, "every process but idle, busiest first");
    let rule_cells: Vec<&str> = elements
        .iter()
        .filter(|e| e.tag == "code")
        .map(|e| e.text.as_str())
        .collect();
    assert!(rule_cells.contains(&"preset:envoy"), "{rule_cells:?}");
    assert!(elements
        .iter()
        .any(|e| e.attr("data-excluded") == Some("microarch")));
    assert!(elements
        .iter()
        .any(|e| e.attr("data-json") == Some("/dropped/event_ring_full")));
}

#[test]
fn comparison_report_in_chromium() {
    let Some(chromium) = browser::chromium_or_skip("comparison_report_in_chromium") else {
        return;
    };
    let (plain, mesh) = (plain_profile(), mesh_profile());
    let (plain, mesh) = (plain.to_str().unwrap(), mesh.to_str().unwrap());
    let html = artefact("comparison.html");
    let base = [
        "report", "--input", plain, "--input", mesh, "--label", "no mesh", "--label", "sidecar",
    ];
    let doc = json_of(&agent_ok(&[&base[..], &["--format", "json"]].concat()));
    agent_ok(
        &[
            &base[..],
            &["--format", "html", "--output", html.to_str().unwrap()],
        ]
        .concat(),
    );
    let elements = open_clean(&chromium, &html, "comparison");

    let checked = figures_match_json(&elements, &doc);
    assert!(checked >= 60, "only {checked} figures on the page");
    let delta = elements
        .iter()
        .find(|e| e.attr("data-json") == Some("/deltas/0/score"))
        .expect("the score difference is on the page");
    let expected = doc["profiles"][1]["score"].as_f64().unwrap() - 100.0;
    assert_eq!(delta.text, format!("{expected:+.1}"));
    assert_eq!(delta.text, "-43.5");

    let profiles = doc["profiles"].as_array().unwrap();
    assert_eq!(marks(&elements, "scores").len(), 2);
    let mues: usize = profiles
        .iter()
        .map(|p| p["mues"].as_object().unwrap().len())
        .sum();
    assert_eq!(mues, 10);
    assert_eq!(marks(&elements, "mues").len(), mues);
    for (i, p) in profiles.iter().enumerate() {
        let expected = count_where(
            p["roles"]
                .as_object()
                .unwrap()
                .values()
                .map(|r| r["cpu_ns"].as_f64()),
        );
        assert_eq!(
            marks(&elements, &format!("roles-cpu-{i}")).len(),
            expected,
            "profile {i}"
        );
    }
    // p50/p99 and proxy CPU per app CPU, with their differences.
    for name in [
        "proxy_cpu_per_app_cpu",
        "app_syscall_p50_ns",
        "app_syscall_p99_ns",
        "proxy_syscall_p99_ns",
    ] {
        for i in 0..2 {
            let at = format!("/profiles/{i}/unit_costs/{name}");
            assert!(
                elements.iter().any(|e| e.attr("data-json") == Some(&at)),
                "{at}"
            );
        }
        let at = format!("/deltas/0/unit_costs/{name}");
        assert!(
            elements.iter().any(|e| e.attr("data-json") == Some(&at)),
            "{at}"
        );
    }
    let only: Vec<(&str, &str)> = elements
        .iter()
        .filter_map(|e| Some((e.attr("data-only-in")?, e.text.as_str())))
        .collect();
    assert_eq!(
        only,
        [
            ("no mesh", "in no mesh only: bash"),
            ("sidecar", "in sidecar only: envoy")
        ]
    );
}

/// The checks above could pass on a broken harness that never sees anything; this shows the
/// harness catching both a request and a console error.
#[test]
fn the_browser_harness_sees_requests_and_console_errors() {
    let Some(chromium) =
        browser::chromium_or_skip("the_browser_harness_sees_requests_and_console_errors")
    else {
        return;
    };
    let input = scratch("harness.json");
    common::worked_example(&input);
    let page = agent_ok(&[
        "score",
        "--input",
        input.to_str().unwrap(),
        "--format",
        "html",
    ]);
    let canary = "<img src=\"http://meshmark-canary.invalid/pixel.png\" alt=\"\">";

    // Without the Content-Security-Policy the image is fetched: the proxy must see it.
    let start = page
        .find("<meta http-equiv=\"Content-Security-Policy\"")
        .unwrap();
    let end = start + page[start..].find('>').unwrap() + 1;
    let open_page =
        format!("{}{}", &page[..start], &page[end..]).replace("<body>", &format!("<body>{canary}"));
    let open_html = scratch("harness-no-csp.html");
    std::fs::write(&open_html, open_page).unwrap();
    let seen = browser::open(&chromium, &open_html, browser::Keep::default());
    assert!(
        seen.requests
            .iter()
            .any(|r| r.contains("meshmark-canary.invalid")),
        "the proxy saw no request for the image: {seen:#?}"
    );

    // With it, the load is refused and Chromium says so on the console.
    let blocked_html = scratch("harness-csp.html");
    std::fs::write(
        &blocked_html,
        page.replace("<body>", &format!("<body>{canary}")),
    )
    .unwrap();
    let blocked = browser::open(&chromium, &blocked_html, browser::Keep::default());
    assert!(
        blocked
            .console
            .iter()
            .any(|l| l.contains("Content Security Policy") && l.contains("meshmark-canary.invalid")),
        "no console error for the refused load: {blocked:#?}"
    );
    assert!(
        blocked.requests.is_empty(),
        "the policy let a request out: {blocked:#?}"
    );
}
