//! `lowbit bench stream`'s output: a Markdown table, JSON, and an SVG plot of hit rate
//! against budget.

use super::sweep::{Row, Sweep};
use std::fmt::Write;

const MIB: f64 = (1 << 20) as f64;

/// The rows as a Markdown table, decode speed relative to the resident run; with a
/// disk rate (RAM budgets), the read rate during stalls and its share of the disk's.
pub fn table(sweep: &Sweep) -> String {
    let rows = &sweep.rows;
    let resident = rows.iter().find(|r| r.policy == "resident").and_then(|r| r.tok_s);
    let disk = sweep.disk.and_then(|d| d.best());
    let mut out = String::new();
    if let Some(d) = &sweep.disk {
        let rate = |r: Option<f64>| r.map_or("-".to_string(), |r| format!("{:.0} MiB/s", r / MIB));
        let _ = writeln!(
            out,
            "disk, cold sequential read of {:.0} MiB: {} through the page cache, {} direct\n",
            d.bytes as f64 / MIB,
            rate(d.buffered),
            rate(d.direct)
        );
    }
    out.push_str(
        "| budget | slots hold | policy | hit rate | MiB moved / token | stall ms / token | MiB/s while stalled | of disk | decode tok/s | of resident |\n|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let (tok_s, ratio) = match (r.tok_s, resident) {
            (Some(t), Some(res)) => (format!("{t:.2}"), format!("{:.0}%", 100.0 * t / res)),
            _ => ("-".into(), "-".into()),
        };
        let budget = if r.budget_bytes == 0 {
            "-".to_string()
        } else {
            format!("{:.0} MiB", r.budget_bytes as f64 / MIB)
        };
        let stall = r.stall_per_token.map_or("-".into(), |s| format!("{:.1}", s * 1e3));
        let rate = r.read_rate();
        let of_disk = match (rate, disk) {
            (Some(r), Some(d)) => format!("{:.0}%", 100.0 * r / d),
            _ => "-".into(),
        };
        let _ = writeln!(
            out,
            "| {budget} | {:.1}% | {} | {:.1}% | {:.3} | {stall} | {} | {of_disk} | {tok_s} | {ratio} |",
            100.0 * r.budget,
            r.policy,
            100.0 * r.hit_rate,
            r.bytes_per_token / MIB,
            rate.map_or("-".into(), |r| format!("{:.0}", r / MIB)),
        );
    }
    out
}

/// The sweep as JSON: `disk` (null without a RAM budget) and `rows`, an array of
/// objects (`budget`, `budget_bytes`, `policy`, `hit_rate`, `bytes_per_token`,
/// `demand_bytes_per_token`, `stall_per_token`, `tok_s`; null for the simulator).
pub fn json(sweep: &Sweep) -> String {
    let rows: Vec<serde_json::Value> = sweep
        .rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "budget": r.budget,
                "budget_bytes": r.budget_bytes,
                "policy": r.policy,
                "hit_rate": r.hit_rate,
                "bytes_per_token": r.bytes_per_token,
                "demand_bytes_per_token": r.demand_bytes_per_token,
                "stall_per_token": r.stall_per_token,
                "tok_s": r.tok_s,
            })
        })
        .collect();
    let disk = sweep
        .disk
        .map(|d| serde_json::json!({"bytes": d.bytes, "buffered": d.buffered, "direct": d.direct}));
    serde_json::json!({"disk": disk, "rows": rows}).to_string()
}

/// Hit rate against budget (log scale), one line per policy, as an SVG document.
pub fn svg(rows: &[Row]) -> String {
    let (w, h, m) = (640.0, 400.0, 60.0);
    let budgets: Vec<f64> = rows
        .iter()
        .filter(|r| r.policy != "resident")
        .map(|r| r.budget)
        .collect();
    let lo = budgets.iter().cloned().fold(f64::INFINITY, f64::min).log2();
    let hi = budgets.iter().cloned().fold(f64::NEG_INFINITY, f64::max).log2();
    let x = |b: f64| m + (b.log2() - lo) / (hi - lo).max(1e-9) * (w - 2.0 * m);
    let y = |r: f64| h - m - r * (h - 2.0 * m);
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    let _ = writeln!(
        out,
        "<line x1=\"{m}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/><line x1=\"{m}\" y1=\"{m}\" x2=\"{m}\" y2=\"{}\" stroke=\"black\"/>",
        h - m,
        w - m,
        h - m,
        h - m
    );
    for i in 0..=4 {
        let r = i as f64 / 4.0;
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{:.0}%</text>",
            m - 6.0,
            y(r) + 4.0,
            100.0 * r
        );
    }
    let mut ticks = budgets.clone();
    ticks.sort_by(f64::total_cmp);
    ticks.dedup();
    for b in &ticks {
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{:.1}%</text>",
            x(*b),
            h - m + 18.0,
            100.0 * b
        );
    }
    let _ = writeln!(
        out,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">expert budget (share of expert bytes)</text>",
        w / 2.0,
        h - 15.0
    );
    let _ = writeln!(
        out,
        "<text x=\"15\" y=\"{}\" transform=\"rotate(-90 15 {})\" text-anchor=\"middle\">hit rate</text>",
        h / 2.0,
        h / 2.0
    );
    let colors = ["#1f77b4", "#2ca02c", "#ff7f0e", "#d62728", "#9467bd"];
    let mut policies: Vec<&str> = rows
        .iter()
        .filter(|r| r.policy != "resident")
        .map(|r| r.policy.as_str())
        .collect();
    policies.dedup();
    let mut seen = Vec::new();
    for p in policies {
        if seen.contains(&p) {
            continue;
        }
        seen.push(p);
        let color = colors[(seen.len() - 1) % colors.len()];
        let mut pts: Vec<(f64, f64)> = rows
            .iter()
            .filter(|r| r.policy == p)
            .map(|r| (r.budget, r.hit_rate))
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let line: Vec<String> = pts.iter().map(|&(b, r)| format!("{:.1},{:.1}", x(b), y(r))).collect();
        let _ = writeln!(
            out,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>",
            line.join(" ")
        );
        let ly = m + 16.0 * seen.len() as f64;
        let _ = writeln!(
            out,
            "<line x1=\"{}\" y1=\"{ly}\" x2=\"{}\" y2=\"{ly}\" stroke=\"{color}\" stroke-width=\"2\"/><text x=\"{}\" y=\"{}\">{p}</text>",
            m + 10.0,
            m + 30.0,
            m + 36.0,
            ly + 4.0
        );
    }
    out.push_str("</svg>\n");
    out
}
