//! A strict reader of the Prometheus text exposition format (version 0.0.4, with the `# EOF`
//! line prometheus-client ends with), and the metric names a PromQL expression reads.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use regex::Regex;

/// One sample: its name, its labels and its value.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A whole scrape: the type of every family and every sample.
#[derive(Debug)]
pub(crate) struct Exposition {
    pub types: BTreeMap<String, String>,
    pub samples: Vec<Sample>,
}

const NAME: &str = r"[a-zA-Z_:][a-zA-Z0-9_:]*";
const LABEL: &str = r#"[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\["\\n])*""#;
const VALUE: &str =
    r"[+-]?(?:Inf|NaN|[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?)";

static SAMPLE_LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r"^(?P<name>{NAME})(?:\{{(?P<labels>{LABEL}(?:,{LABEL})*)?\}})? (?P<value>{VALUE})$"
    ))
    .unwrap()
});
static LABEL_PAIR: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?P<key>[a-zA-Z_][a-zA-Z0-9_]*)="(?P<value>(?:[^"\\\n]|\\["\\n])*)""#).unwrap()
});
static HELP_LINE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&format!(r"^# HELP (?P<name>{NAME}) \S.*$")).unwrap());
static TYPE_LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r"^# TYPE (?P<name>{NAME}) (?P<type>counter|gauge|histogram|summary|untyped)$"
    ))
    .unwrap()
});

impl Exposition {
    /// Parses `text`, failing on the first line that breaks the format: an unknown comment, a
    /// sample outside the family its `# TYPE` announced, a family announced twice, a histogram
    /// bucket without `le`, anything after `# EOF`.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let mut types = BTreeMap::new();
        let mut samples = Vec::new();
        let mut family: Option<(String, String)> = None;
        let mut ended = false;
        for (number, line) in text.lines().enumerate() {
            let at = |why: &str| format!("line {}: {why}: {line:?}", number + 1);
            if ended {
                return Err(at("text after # EOF"));
            }
            if line == "# EOF" {
                ended = true;
            } else if let Some(c) = TYPE_LINE.captures(line) {
                let (name, kind) = (c["name"].to_owned(), c["type"].to_owned());
                if types.insert(name.clone(), kind.clone()).is_some() {
                    return Err(at("family announced twice"));
                }
                family = Some((name, kind));
            } else if HELP_LINE.is_match(line) {
            } else if let Some(c) = SAMPLE_LINE.captures(line) {
                let name = c["name"].to_owned();
                let labels: BTreeMap<String, String> = c
                    .name("labels")
                    .map(|l| {
                        LABEL_PAIR
                            .captures_iter(l.as_str())
                            .map(|p| (p["key"].to_owned(), p["value"].to_owned()))
                            .collect()
                    })
                    .unwrap_or_default();
                let value = parse_value(&c["value"]).ok_or_else(|| at("bad value"))?;
                let Some((family_name, kind)) = &family else {
                    return Err(at("sample before any # TYPE"));
                };
                let allowed: &[&str] = match kind.as_str() {
                    "counter" => &["_total", "_created"],
                    "histogram" => &["_bucket", "_sum", "_count", "_created"],
                    "summary" => &["", "_sum", "_count", "_created"],
                    _ => &[""],
                };
                let suffix = name
                    .strip_prefix(family_name.as_str())
                    .filter(|s| allowed.contains(s))
                    .ok_or_else(|| at(&format!("not a sample of {kind} {family_name}")))?;
                if suffix == "_bucket" && !labels.contains_key("le") {
                    return Err(at("bucket without le"));
                }
                samples.push(Sample {
                    name,
                    labels,
                    value,
                });
            } else {
                return Err(at("not a sample, # HELP, # TYPE or # EOF line"));
            }
        }
        Ok(Self { types, samples })
    }

    /// The value of the one sample named `name` whose labels are exactly `labels`.
    pub(crate) fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == wanted)
            .map(|s| s.value)
    }

    /// Every sample named `name`.
    pub(crate) fn series(&self, name: &str) -> Vec<&Sample> {
        self.samples.iter().filter(|s| s.name == name).collect()
    }

    pub(crate) fn sample_names(&self) -> BTreeSet<&str> {
        self.samples.iter().map(|s| s.name.as_str()).collect()
    }

    /// Checks one histogram series: buckets never decrease, `+Inf` equals `_count`; returns
    /// the count.
    pub(crate) fn histogram_count(&self, family: &str, labels: &[(&str, &str)]) -> f64 {
        let base: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let mut buckets: Vec<(f64, f64)> = self
            .series(&format!("{family}_bucket"))
            .into_iter()
            .filter(|s| {
                let mut rest = s.labels.clone();
                rest.remove("le");
                rest == base
            })
            .map(|s| (parse_value(&s.labels["le"]).unwrap(), s.value))
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert!(!buckets.is_empty(), "no buckets for {family}{labels:?}");
        assert!(
            buckets.windows(2).all(|w| w[0].1 <= w[1].1),
            "{family}{labels:?} buckets decrease: {buckets:?}"
        );
        let count = self
            .value(&format!("{family}_count"), labels)
            .unwrap_or_else(|| panic!("no {family}_count{labels:?}"));
        let last = buckets.last().unwrap();
        assert_eq!(last, &(f64::INFINITY, count), "{family}{labels:?}");
        count
    }
}

fn parse_value(text: &str) -> Option<f64> {
    match text.trim_start_matches('+') {
        "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        other => other.parse().ok(),
    }
}

/// Words of PromQL that look like metric names but are not.
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "inf",
    "nan",
];

/// The metric names a PromQL expression selects: identifiers that are not functions,
/// keywords, label names (in `{…}` or in `by (…)`-style clauses), strings or ranges.
pub(crate) fn promql_metric_names(expr: &str) -> BTreeSet<String> {
    static STRINGS: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r#""(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`"#).unwrap());
    static MATCHERS: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\{[^}]*\}").unwrap());
    static RANGES: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\[[^\]]*\]").unwrap());
    static CLAUSES: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)").unwrap()
    });
    static IDENT: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"[a-zA-Z0-9_:.$]*[a-zA-Z_:][a-zA-Z0-9_:]*").unwrap());
    let expr = STRINGS.replace_all(expr, " ");
    let expr = MATCHERS.replace_all(&expr, " ");
    let expr = RANGES.replace_all(&expr, " ");
    let expr = CLAUSES.replace_all(&expr, " ");
    IDENT
        .find_iter(&expr)
        .filter(|m| {
            let word = m.as_str();
            // A token starting with a digit, a dot or `$` is a number, duration or variable.
            let starts_like_a_name = word
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
            let is_call = expr[m.end()..].trim_start().starts_with('(');
            starts_like_a_name && !is_call && !KEYWORDS.contains(&word.to_lowercase().as_str())
        })
        .map(|m| m.as_str().to_owned())
        .collect()
}

#[test]
fn promql_names_leave_out_functions_labels_keywords_and_durations() {
    let names = promql_metric_names(
        r#"histogram_quantile(0.95, sum by (le, route) (rate(http_request_duration_seconds_bucket{job="task-api", route!~"/metrics|x"}[5m] offset 1h))) > 0.5
           and on (instance) (time() - backup_newest_timestamp_seconds) > 1.5 * backup_expected_interval_seconds
           or vector(0) unless max_over_time(up[$__rate_interval:1m]) == bool 1e3"#,
    );
    let expected: BTreeSet<String> = [
        "http_request_duration_seconds_bucket",
        "backup_newest_timestamp_seconds",
        "backup_expected_interval_seconds",
        "up",
    ]
    .map(str::to_owned)
    .into();
    assert_eq!(names, expected);
}

#[test]
fn the_parser_refuses_what_the_format_forbids() {
    let good = "# HELP a_total x\n# TYPE a counter\na_total{k=\"v\"} 1\n# TYPE h histogram\n\
                h_bucket{le=\"+Inf\"} 2\nh_sum 0.5\nh_count 2\n# EOF\n";
    let parsed = Exposition::parse(good).unwrap();
    assert_eq!(parsed.value("a_total", &[("k", "v")]), Some(1.0));
    assert_eq!(parsed.histogram_count("h", &[]), 2.0);
    for bad in [
        "a 1\n",
        "# TYPE a counter\na 1\n",
        "# TYPE a gauge\na{k=v} 1\n",
        "# TYPE a gauge\na one\n",
        "# TYPE a gauge\na 1 trailing junk\n",
        "# TYPE h histogram\nh_bucket 1\n",
        "# TYPE a gauge\n# TYPE a gauge\n",
        "# EOF\n# TYPE a gauge\n",
        "# something else\n",
    ] {
        assert!(Exposition::parse(bad).is_err(), "accepted {bad:?}");
    }
}
