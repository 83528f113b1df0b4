//! The status page's chart: requests per slot as bars and their mean latency as a line, drawn
//! as inline SVG on the server (no script, and only attributes: nothing the CSP forbids).

use maud::{Markup, html};

use crate::metrics::Sample;

const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 120.0;

/// The chart of `samples` (oldest first), `slot_secs` seconds each.
pub(super) fn requests(samples: &[Sample], slot_secs: u64) -> Markup {
    let most = samples.iter().map(|s| s.requests).max().unwrap_or(0).max(1);
    let slowest = samples
        .iter()
        .filter_map(|s| s.mean_ms)
        .fold(0.0_f64, f64::max)
        .max(1.0);
    let step = WIDTH / samples.len().max(1) as f64;
    let total: u64 = samples.iter().map(|s| s.requests).sum();
    let span_secs = samples.len() as u64 * slot_secs;
    let rate = total as f64 / span_secs.max(1) as f64;
    let points: Vec<String> = samples
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            s.mean_ms.map(|ms| {
                format!(
                    "{:.1},{:.1}",
                    (i as f64 + 0.5) * step,
                    HEIGHT - ms / slowest * (HEIGHT - 4.0)
                )
            })
        })
        .collect();
    let summary = format!(
        "{total} requests in the last {} minutes ({rate:.2} per second); slowest mean latency \
         {slowest:.1} ms",
        span_secs / 60
    );
    html! {
        figure.chart {
            svg viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img" aria-label=(summary) preserveAspectRatio="none" {
                @for (i, s) in samples.iter().enumerate() {
                    @if s.requests > 0 {
                        @let h = s.requests as f64 / most as f64 * (HEIGHT - 4.0);
                        rect.bar x=(format!("{:.1}", i as f64 * step + 1.0)) y=(format!("{:.1}", HEIGHT - h))
                            width=(format!("{:.1}", (step - 2.0).max(1.0))) height=(format!("{h:.1}")) {
                            title { (s.requests) " requests" @if let Some(ms) = s.mean_ms { ", " (format!("{ms:.1}")) " ms mean" } }
                        }
                    }
                }
                @if points.len() > 1 {
                    polyline.latency points=(points.join(" ")) {}
                }
            }
            figcaption {
                (summary) ". Bars: requests per " (slot_secs) " s (highest " (most) "); line: mean latency."
            }
        }
    }
}
