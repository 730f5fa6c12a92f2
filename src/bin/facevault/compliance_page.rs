//! The compliance report as one self-contained HTML page for an inspector (`compliance --html`):
//! inline styles, no scripts, no outside assets, readable on screen and on paper. It is written
//! as well-formed XML too (every element closed, every attribute quoted), so that a strict
//! parser reads it, and so does any browser.

use std::fmt::Write;

use facevault::ComplianceReport;

const STYLE: &str = "
body { font: 15px/1.45 system-ui, 'Noto Sans', 'PingFang SC', sans-serif; color: #1b1f24; margin: 2em auto; max-width: 62em; padding: 0 1.5em; }
h1 { font-size: 1.6em; margin: 0 0 0.2em; }
h2 { font-size: 1.15em; margin: 0 0 0.4em; }
.meta { color: #57606a; margin-bottom: 1.5em; }
.refused { border: 2px solid #cf222e; background: #ffebe9; padding: 0.6em 1em; margin: 1em 0; }
.ok { border: 2px solid #1a7f37; background: #dafbe1; padding: 0.6em 1em; margin: 1em 0; }
section { border: 1px solid #d0d7de; border-radius: 6px; padding: 0.8em 1.1em; margin: 0.9em 0; page-break-inside: avoid; }
h3 { font-size: 0.85em; text-transform: uppercase; letter-spacing: 0.04em; color: #57606a; margin: 0.7em 0 0.2em; }
ul { margin: 0.2em 0; padding-left: 1.3em; }
li.due { color: #9a6700; font-weight: 600; }
code { font-size: 0.85em; color: #57606a; word-break: break-all; }
.bar { background: #eaeef2; border-radius: 4px; height: 1.1em; width: 100%; margin: 0.3em 0 0.8em; }
.fill { background: #0969da; border-radius: 4px; height: 100%; }
.fill.late { background: #cf222e; }
.fill.done { background: #1a7f37; }
.figure { font-variant-numeric: tabular-nums; }
@media print { body { margin: 0; } section { border-color: #888; } }
";

/// The page.
pub fn render(report: &ComplianceReport) -> String {
    let mut page = String::with_capacity(16 * 1024);
    page.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n");
    let _ = writeln!(
        page,
        "<title>facevault compliance report, vault {}, {}</title>",
        escape(&report.vault_id),
        escape(&report.date)
    );
    let _ = writeln!(page, "<style>{STYLE}</style>\n</head>\n<body>");
    page.push_str("<h1>Compliance report: Measures on face recognition (2025)</h1>\n");
    let _ = writeln!(
        page,
        "<p class=\"meta\">Vault <code>{}</code> · {} · {} audit records verified for this report</p>",
        escape(&report.vault_id),
        escape(&report.date),
        report.audit_records_verified
    );
    match (&report.matching_refused, &report.enrolment_refused) {
        (None, None) => {
            page.push_str("<p class=\"ok\">The law, as configured, lets this device enrol and match.</p>\n")
        }
        (matching, enrolment) => {
            for (what, refusal) in [("Matching", matching), ("Enrolment", enrolment)] {
                if let Some(refusal) = refusal {
                    let _ = writeln!(
                        page,
                        "<p class=\"refused\">{what} is refused: {}</p>",
                        escape(refusal)
                    );
                }
            }
        }
    }
    filing_bars(&mut page, report);
    for article in &report.articles {
        let _ = writeln!(
            page,
            "<section id=\"{}\">\n<h2>{} · {}</h2>",
            anchor(article.article),
            escape(article.article),
            escape(article.title)
        );
        list(
            &mut page,
            "Configured",
            article.configured.iter().map(|line| escape(line)),
            "",
        );
        list(
            &mut page,
            "Holds",
            article
                .holds
                .iter()
                .map(|proof| format!("{} <code>{}</code>", escape(proof.claim), escape(proof.test))),
            "",
        );
        list(
            &mut page,
            "Due",
            article.due.iter().map(|line| escape(line)),
            "due",
        );
        page.push_str("</section>\n");
    }
    page.push_str("</body>\n</html>\n");
    page
}

/// The persons stored against the filing threshold, and each filing clock's working days, as
/// bars.
fn filing_bars(page: &mut String, report: &ComplianceReport) {
    let filing = &report.filing;
    page.push_str("<section id=\"filing\">\n<h2>Art. 15 filing</h2>\n");
    let share = percent(filing.persons as f64, filing.threshold as f64);
    let _ = writeln!(
        page,
        "<div class=\"figure\">Persons stored: {} of the filing threshold of {} ({share:.0}%)</div>\n<div class=\"bar\"><div class=\"fill\" style=\"width: {share:.1}%\"></div></div>",
        filing.persons, filing.threshold
    );
    if filing.clocks.is_empty() {
        page.push_str("<div>No filing clock is running.</div>\n");
    }
    for clock in &filing.clocks {
        let kind = clock.kind.title();
        if let Some(made) = &clock.made {
            let _ = writeln!(
                page,
                "<div class=\"figure\">{kind}: clock started {}, due by {} · made on {}, reference {}</div>\n<div class=\"bar\"><div class=\"fill done\" style=\"width: 100%\"></div></div>",
                escape(&clock.started_on),
                escape(clock.deadline.as_deref().unwrap_or("?")),
                escape(&made.filed_on),
                escape(&made.reference)
            );
            continue;
        }
        let left = clock.working_days_left.unwrap_or(0);
        // The bar is the time left: full when the clock starts, empty on the deadline, and all
        // red once it has passed.
        let (width, late) = if left < 0 {
            (100.0, " late")
        } else {
            (percent(left as f64, 30.0), "")
        };
        let _ = writeln!(
            page,
            "<div class=\"figure\">{kind}: clock started {}, due by {} · {}</div>\n<div class=\"bar\"><div class=\"fill{late}\" style=\"width: {width:.1}%\"></div></div>",
            escape(&clock.started_on),
            escape(clock.deadline.as_deref().unwrap_or("?")),
            escape(&clock.time_left())
        );
    }
    page.push_str("</section>\n");
}

fn list(page: &mut String, heading: &str, items: impl Iterator<Item = String>, class: &str) {
    let items: Vec<String> = items.collect();
    let _ = writeln!(page, "<h3>{heading}</h3>");
    if items.is_empty() {
        page.push_str("<ul><li>—</li></ul>\n");
        return;
    }
    page.push_str("<ul>\n");
    for item in items {
        if class.is_empty() {
            let _ = writeln!(page, "<li>{item}</li>");
        } else {
            let _ = writeln!(page, "<li class=\"{class}\">{item}</li>");
        }
    }
    page.push_str("</ul>\n");
}

fn percent(part: f64, whole: f64) -> f64 {
    if whole <= 0.0 {
        return 0.0;
    }
    (part / whole * 100.0).clamp(0.0, 100.0)
}

/// "Arts. 3-4" → "arts-3-4": an element ID.
fn anchor(article: &str) -> String {
    article
        .to_ascii_lowercase()
        .chars()
        .filter_map(|c| match c {
            'a'..='z' | '0'..='9' => Some(c),
            ' ' | '-' => Some('-'),
            _ => None,
        })
        .collect()
}

/// Text for an element's content or a quoted attribute.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            _ => escaped.push(c),
        }
    }
    escaped
}
