//! `certops scan`: probe TLS endpoints, print what they serve, exit with a Nagios code.
//!
//! Exit codes: 0 every endpoint ok; 1 warning (expiring, but beyond `--crit-days`);
//! 2 critical (expired, untrusted, name mismatch, expiring within `--crit-days`, …);
//! 3 unknown (timeout, refused, DNS failure) when nothing is critical.

use std::collections::HashSet;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use certops_tls::{EndpointReport, ProbeRequest, Prober, ProberConfig, Status, Target, TrustStore};
use futures::StreamExt;

/// Nagios: all good.
pub const EXIT_OK: i32 = 0;
/// Nagios: warning.
pub const EXIT_WARNING: i32 = 1;
/// Nagios: critical.
pub const EXIT_CRITICAL: i32 = 2;
/// Nagios: unknown.
pub const EXIT_UNKNOWN: i32 = 3;

/// Arguments of `certops scan`.
#[derive(Debug, Clone, clap::Args)]
pub struct ScanArgs {
    /// Targets: HOST, HOST:PORT or HOST:PORT@SNI (port 443 by default; [v6]:PORT for IPv6).
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,

    /// Read targets from FILE, one per line; '#' starts a comment (repeatable).
    #[arg(long = "file", value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// Scan every endpoint (host, port, SNI) of every certificate object in an
    /// inventory file (see runbooks/README.md for the format).
    #[arg(long = "inventory", value_name = "FILE")]
    pub inventory: Option<PathBuf>,

    /// Deadline per target attempt, covering DNS, connect, handshake and read (e.g. 3s, 500ms).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_timeout)]
    pub timeout: Duration,

    /// Targets probed at once.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub concurrency: u32,

    /// Extra trust roots, PEM (repeatable); added to the built-in Mozilla roots.
    #[arg(long = "ca-bundle", value_name = "FILE")]
    pub ca_bundles: Vec<PathBuf>,

    /// Trust only the --ca-bundle roots, not the built-in Mozilla roots.
    #[arg(long)]
    pub no_default_roots: bool,

    /// A verified chain expiring within N days is a warning.
    #[arg(long, value_name = "N", default_value_t = 30, value_parser = clap::value_parser!(i64).range(0..=36_500))]
    pub warn_days: i64,

    /// A verified chain expiring within N days is critical (must be <= --warn-days).
    #[arg(long, value_name = "N", default_value_t = 7, value_parser = clap::value_parser!(i64).range(0..=36_500))]
    pub crit_days: i64,

    /// Extra attempts for targets that time out, refuse, fail DNS or fail the handshake.
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=10))]
    pub retries: u32,

    /// One JSON object per endpoint per line instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text.trim())
        .map_err(|e| format!("{text:?} is not a duration like 3s or 500ms: {e}"))?;
    if d.is_zero() || d > Duration::from_secs(3600) {
        return Err(format!("{text:?}: the timeout must be between 1ms and 1h"));
    }
    Ok(d)
}

/// Runs the scan, printing to stdout; returns the Nagios exit code.
pub async fn run(args: ScanArgs) -> anyhow::Result<i32> {
    run_to(args, &mut std::io::stdout()).await
}

/// Runs the scan, printing to `out`; returns the Nagios exit code.
pub async fn run_to(args: ScanArgs, out: &mut (dyn Write + Send)) -> anyhow::Result<i32> {
    if args.crit_days > args.warn_days {
        bail!(
            "--crit-days ({}) must not exceed --warn-days ({})",
            args.crit_days,
            args.warn_days
        );
    }
    let requests = gather_requests(&args)?;
    if requests.is_empty() {
        bail!("no targets: give HOST[:PORT][@SNI] arguments, --file FILE or --inventory FILE");
    }
    let prober = Prober::new(ProberConfig {
        timeout: args.timeout,
        concurrency: args.concurrency as usize,
        retries: args.retries,
        warn_days: args.warn_days,
        trust: trust_store(&args)?,
        ..ProberConfig::default()
    })?;

    let order: Vec<String> = requests.iter().map(|r| r.target.to_string()).collect();
    let progress = progress_bar(requests.len());
    let mut endpoints: Vec<EndpointReport> = Vec::new();
    let mut codes: Vec<i32> = Vec::new();
    let mut reports = prober.scan(requests);
    while let Some(report) = reports.next().await {
        if let Some(pb) = &progress {
            pb.inc(1);
        }
        for endpoint in report.endpoints {
            codes.push(exit_code_for(
                endpoint.status,
                endpoint.days_left,
                args.crit_days,
            ));
            if args.json {
                // Streamed, so a large scan shows results as they come.
                let line = serde_json::to_string(&endpoint).context("serialising a report")?;
                writeln!(out, "{line}").context("writing to stdout")?;
            } else {
                endpoints.push(endpoint);
            }
        }
    }
    if let Some(pb) = progress {
        pb.finish_and_clear();
    }
    if !args.json {
        endpoints.sort_by_key(|e| (order.iter().position(|t| *t == e.target), e.address));
        write_table(out, &endpoints, args.crit_days)?;
    }
    out.flush().ok();
    Ok(exit_code_of(&codes))
}

/// Targets from the command line, `--file`s and the `--inventory`, in order, duplicates dropped.
fn gather_requests(args: &ScanArgs) -> anyhow::Result<Vec<ProbeRequest>> {
    let mut texts: Vec<(String, String)> = args
        .targets
        .iter()
        .map(|t| (t.clone(), "argument".to_owned()))
        .collect();
    for file in &args.files {
        let body = std::fs::read_to_string(file)
            .with_context(|| format!("reading targets from {}", file.display()))?;
        texts.extend(
            parse_target_lines(&body)
                .into_iter()
                .map(|(line, text)| (text, format!("{}:{line}", file.display()))),
        );
    }
    let mut seen = HashSet::new();
    let mut requests = Vec::new();
    if let Some(path) = &args.inventory {
        let body = std::fs::read_to_string(path)
            .with_context(|| format!("reading inventory {}", path.display()))?;
        let inventory = certops_core::Inventory::from_toml_str(&body)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        for cert in &inventory.certificates {
            for ep in &cert.endpoints {
                let target = Target::with_sni(ep.host.clone(), ep.port, ep.sni.clone())
                    .with_context(|| format!("bad endpoint in inventory entry {}", cert.id))?;
                if seen.insert(target.clone()) {
                    requests.push(ProbeRequest::from(target));
                }
            }
        }
    }
    for (text, origin) in texts {
        let target: Target = text
            .parse()
            .with_context(|| format!("bad target ({origin})"))?;
        if seen.insert(target.clone()) {
            requests.push(ProbeRequest::from(target));
        }
    }
    Ok(requests)
}

/// Non-empty, non-comment lines with their 1-based line numbers.
fn parse_target_lines(body: &str) -> Vec<(usize, String)> {
    body.lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let text = line.split('#').next().unwrap_or("").trim();
            (!text.is_empty()).then(|| (i + 1, text.to_owned()))
        })
        .collect()
}

fn trust_store(args: &ScanArgs) -> anyhow::Result<TrustStore> {
    if args.no_default_roots && args.ca_bundles.is_empty() {
        bail!("--no-default-roots needs at least one --ca-bundle");
    }
    let mut trust = if args.no_default_roots {
        TrustStore::empty()
    } else {
        TrustStore::webpki_roots()
    };
    for bundle in &args.ca_bundles {
        trust.add_pem_file(bundle)?;
    }
    Ok(trust)
}

fn progress_bar(len: usize) -> Option<indicatif::ProgressBar> {
    // Only for a person watching: never in pipes, logs or CI.
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let pb = indicatif::ProgressBar::new(len as u64);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} {pos}/{len} targets [{bar:40}] {elapsed}",
    ) {
        pb.set_style(style.progress_chars("=> "));
    }
    Some(pb)
}

/// The Nagios code of one endpoint.
pub fn exit_code_for(status: Status, days_left: Option<i64>, crit_days: i64) -> i32 {
    match status {
        Status::Ok => EXIT_OK,
        Status::Expiring if days_left.is_some_and(|d| d > crit_days) => EXIT_WARNING,
        Status::Expiring => EXIT_CRITICAL,
        Status::Timeout | Status::Refused | Status::DnsFailure => EXIT_UNKNOWN,
        _ => EXIT_CRITICAL,
    }
}

/// Combines endpoint codes: critical beats unknown beats warning beats ok.
pub fn exit_code_of(codes: &[i32]) -> i32 {
    [EXIT_CRITICAL, EXIT_UNKNOWN, EXIT_WARNING]
        .into_iter()
        .find(|c| codes.contains(c))
        .unwrap_or(EXIT_OK)
}

fn write_table(
    out: &mut (dyn Write + Send),
    endpoints: &[EndpointReport],
    crit_days: i64,
) -> anyhow::Result<()> {
    let header = [
        "STATUS", "TARGET", "ADDRESS", "DAYS", "EXPIRES", "ISSUER", "DETAIL",
    ];
    let rows: Vec<[String; 7]> = endpoints
        .iter()
        .map(|e| {
            let expires = e
                .verified_chain_expiry
                .or(e.leaf.as_ref().map(|l| l.not_after))
                .map(|t| t.format("%Y-%m-%d").to_string())
                .unwrap_or_else(|| "-".into());
            [
                e.status.to_string(),
                e.target.clone(),
                e.address
                    .map(|a| a.to_string())
                    .unwrap_or_else(|| "-".into()),
                e.days_left
                    .map(|d| d.to_string())
                    .unwrap_or_else(|| "-".into()),
                expires,
                e.leaf
                    .as_ref()
                    .map(|l| short_name(&l.issuer))
                    .unwrap_or_else(|| "-".into()),
                e.detail.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[&str]| -> String {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        s.trim_end().to_owned()
    };
    writeln!(out, "{}", line(&header))?;
    for row in &rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        writeln!(out, "{}", line(&cells))?;
    }
    let mut counts: Vec<(Status, usize)> = Vec::new();
    for e in endpoints {
        match counts.iter_mut().find(|(s, _)| *s == e.status) {
            Some((_, n)) => *n += 1,
            None => counts.push((e.status, 1)),
        }
    }
    counts.sort_by_key(|(s, _)| s.rank());
    let summary: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    let codes: Vec<i32> = endpoints
        .iter()
        .map(|e| exit_code_for(e.status, e.days_left, crit_days))
        .collect();
    let code = exit_code_of(&codes);
    let verdict = ["OK", "WARNING", "CRITICAL", "UNKNOWN"][code as usize];
    writeln!(
        out,
        "\n{verdict}: {} endpoints: {}",
        endpoints.len(),
        summary.join(", ")
    )?;
    Ok(())
}

/// The CN of a distinguished name if it has one, else the whole name.
fn short_name(dn: &str) -> String {
    dn.split(", ")
        .find_map(|part| part.strip_prefix("CN="))
        .unwrap_or(dn)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nagios_codes_rank_critical_unknown_warning_ok() {
        assert_eq!(exit_code_for(Status::Ok, Some(90), 7), EXIT_OK);
        assert_eq!(exit_code_for(Status::Expiring, Some(20), 7), EXIT_WARNING);
        assert_eq!(exit_code_for(Status::Expiring, Some(7), 7), EXIT_CRITICAL);
        assert_eq!(exit_code_for(Status::Timeout, None, 7), EXIT_UNKNOWN);
        assert_eq!(exit_code_for(Status::DnsFailure, None, 7), EXIT_UNKNOWN);
        assert_eq!(
            exit_code_for(Status::NameMismatch, Some(90), 7),
            EXIT_CRITICAL
        );
        assert_eq!(exit_code_of(&[0, 1, 3]), EXIT_UNKNOWN);
        assert_eq!(exit_code_of(&[0, 1, 3, 2]), EXIT_CRITICAL);
        assert_eq!(exit_code_of(&[0, 1]), EXIT_WARNING);
        assert_eq!(exit_code_of(&[]), EXIT_OK);
    }

    #[test]
    fn target_files_skip_comments_and_blanks() {
        let body = "# fleet\nshop.example.com\n\n  api.example.com:8443 # internal\n#x\n10.0.0.1:443@a.example\n";
        assert_eq!(
            parse_target_lines(body),
            vec![
                (2, "shop.example.com".to_owned()),
                (4, "api.example.com:8443".to_owned()),
                (6, "10.0.0.1:443@a.example".to_owned())
            ]
        );
    }

    #[test]
    fn timeouts_parse_like_humantime() {
        assert_eq!(parse_timeout("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_timeout("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_timeout("0s").is_err());
        assert!(parse_timeout("soon").is_err());
        assert!(parse_timeout("2h").is_err());
    }

    #[test]
    fn issuer_names_shorten_to_their_cn() {
        assert_eq!(short_name("C=US, O=Let's Encrypt, CN=R3"), "R3");
        assert_eq!(short_name("O=No CN"), "O=No CN");
    }
}
