//! The `hotline` command line: argument parsing only; the commands live in `hotline::commands`.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use hotline::commands;

#[derive(Parser)]
#[command(version, about = "Counts 12345 hotline case events from Kafka into monthly snapshots")]
struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    /// Show the Kafka client's own log lines (hidden by the commands that read or send and exit).
    #[arg(long, short, global = true)]
    verbose: bool,
    /// How long the commands that read or send and exit (snapshot show, report, diff, replay)
    /// wait for a Kafka broker to answer before giving up; `run` waits as long as it takes.
    #[arg(long, default_value = "10s", value_parser = commands::parse_duration, global = true)]
    kafka_timeout: std::time::Duration,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the pipeline: consume the input topics, count, publish snapshots, serve /metrics.
    Run {
        #[arg(long, env = "HOTLINE_CONFIG", default_value = "config/hotline.toml")]
        config: PathBuf,
    },
    /// Read published snapshots.
    Snapshot {
        #[command(subcommand)]
        command: SnapshotCommand,
    },
    /// Print the office's monthly report of a month, from its latest snapshot.
    Report {
        #[arg(long, env = "HOTLINE_CONFIG", default_value = "config/hotline.toml")]
        config: PathBuf,
        /// The month, YYYY-MM.
        #[arg(long)]
        month: String,
        /// A city's division code (province mode): that city's report.
        #[arg(long)]
        city: Option<String>,
        /// The provincial bulletin (province mode): the cities side by side, ranked.
        #[arg(long, conflicts_with_all = ["city", "notes"])]
        province: bool,
        #[arg(long, value_enum, default_value_t = commands::report::Format::Markdown)]
        format: commands::report::Format,
        /// Write the report here instead of standard output (HTML is one self-contained page).
        #[arg(long)]
        output: Option<PathBuf>,
        /// The office's Markdown for the prose sections (## headings naming 突出, 意见/建议, 解决).
        #[arg(long)]
        notes: Option<PathBuf>,
        /// The publication date, YYYY-MM-DD; by default the day the figures are as of.
        #[arg(long)]
        date: Option<String>,
    },
    /// Compare two snapshots of one month, figure by figure and department by department: each
    /// a JSON file (as `snapshot show --format json` prints one) or `live`.
    Diff {
        a: String,
        b: String,
        #[arg(long, env = "HOTLINE_CONFIG", default_value = "config/hotline.toml")]
        config: PathBuf,
        /// The month of a `live` side, YYYY-MM.
        #[arg(long)]
        month: Option<String>,
        /// A city's division code (province mode): its `live` snapshot and registry.
        #[arg(long)]
        city: Option<String>,
        /// The province's `live` snapshot (province mode).
        #[arg(long, conflicts_with = "city")]
        province: bool,
        #[arg(long, value_enum, default_value_t = commands::diff::Format::Markdown)]
        format: commands::diff::Format,
    },
    /// Print the counting rules of a configuration in their canonical form, with the
    /// fingerprint every snapshot counted by them names.
    Rules {
        #[arg(long, env = "HOTLINE_CONFIG", default_value = "config/hotline.toml")]
        config: PathBuf,
    },
    /// Count the input topics again from a month on, under the rules of a configuration, and
    /// write each month's final snapshot (a bounded job: it reads to the topics' current end
    /// and stops; nothing of the live pipeline's is touched).
    Recount {
        /// The rules to count by, and the topics to read.
        #[arg(long, env = "HOTLINE_CONFIG", default_value = "config/hotline.toml")]
        config: PathBuf,
        /// The first month, YYYY-MM: reading starts at its beginning, less the margin.
        #[arg(long)]
        from: String,
        /// The last month written, YYYY-MM (later events are read all the same).
        #[arg(long)]
        to: Option<String>,
        /// Write each snapshot to DIR/<key>.json (2022-04.json; in province mode
        /// 220100/2022-04.json for a city other than the default and province/2022-04.json)
        /// and a summary to DIR/recount.json.
        #[arg(long, conflicts_with = "topic")]
        output: Option<PathBuf>,
        /// Send the snapshots to this topic (Avro, keyed as the live ones).
        #[arg(long)]
        topic: Option<String>,
        /// With --topic naming the live snapshots topic: replace the live figures, continuing
        /// their revisions; refused while a `hotline run` of the group is running.
        #[arg(long, requires = "topic")]
        replace_live: bool,
        /// How long before the first month's start, in Kafka time, to start reading.
        #[arg(long, default_value = "1d")]
        margin: String,
        /// Decoding threads (default: the cores); each counting partition has one of its own.
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
        threads: Option<u16>,
        /// Counting partitions (default: the live pipeline's).
        #[arg(long, value_parser = clap::value_parser!(i32).range(1..))]
        partitions: Option<i32>,
    },
    /// Send an NDJSON file of contract events to the input topics (history backfill).
    Replay {
        /// One event per line; `-` reads standard input.
        file: PathBuf,
        #[arg(long, env = "HOTLINE_CONFIG", default_value = "config/hotline.toml")]
        config: PathBuf,
        /// Send the lines `run` would dead-letter too, instead of skipping them (to test the
        /// dead letters).
        #[arg(long)]
        send_invalid: bool,
    },
    /// Hand the internal topics (case_events, changelog, partials) of another deployment, and
    /// where it stopped, to this configuration's consumer group (stop that deployment first).
    TakeOver {
        #[arg(long, env = "HOTLINE_CONFIG", default_value = "config/hotline.toml")]
        config: PathBuf,
    },
    /// Grow the count of counting partitions of a stopped deployment, moving every case to
    /// its new partition (stop every `hotline run` first; run again to finish an interrupted one).
    Rescale {
        #[arg(long, env = "HOTLINE_CONFIG", default_value = "config/hotline.toml")]
        config: PathBuf,
        /// The new count of counting partitions (of `case_events` and the changelog).
        #[arg(long)]
        partitions: i32,
    },
    /// Run the whole pipeline on a generated month, with an in-process Kafka mock cluster.
    Demo {
        /// Address for /metrics while the demo runs.
        #[arg(long, default_value = "127.0.0.1:9464")]
        listen: String,
        /// Fraction of each city's cases to generate (四平's month is the reference month's
        /// 31,681 cases at 1).
        #[arg(long, default_value_t = 1.0)]
        scale: f64,
        /// The other eight cities' cases per resident, as a share of 四平's (whose April 2022,
        /// the month of the reference, was its lockdown: 56% of its cases were about the
        /// epidemic).
        #[arg(long, default_value_t = 0.25)]
        province_rate: f64,
        /// Exit after printing the report instead of serving /metrics until Ctrl-C.
        #[arg(long)]
        exit: bool,
    },
}

#[derive(Subcommand)]
enum SnapshotCommand {
    /// Print the latest revision of a month's snapshot.
    Show {
        #[arg(long, env = "HOTLINE_CONFIG", default_value = "config/hotline.toml")]
        config: PathBuf,
        /// The month, YYYY-MM.
        #[arg(long)]
        month: String,
        /// A city's division code (province mode): that city's snapshot.
        #[arg(long)]
        city: Option<String>,
        /// The province's snapshot (province mode): its totals and its cities side by side.
        #[arg(long, conflicts_with = "city")]
        province: bool,
        #[arg(long, value_enum, default_value_t = commands::snapshot::Format::Table)]
        format: commands::snapshot::Format,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // `run` logs what its Kafka clients say; a command that reads and exits says one line.
    let kafka_lines = cli.verbose
        || matches!(
            cli.command,
            Command::Run { .. } | Command::Demo { .. } | Command::Recount { .. } | Command::Rescale { .. }
        );
    commands::init_logging(matches!(cli.log_format, LogFormat::Json), kafka_lines);
    let timeout = cli.kafka_timeout;
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run { config } => commands::run::run(&config).await,
            Command::Snapshot { command: SnapshotCommand::Show { config, month, city, province, format } } => {
                commands::snapshot::show(&config, &month, city.as_deref(), province, format, timeout).await
            }
            Command::Report { config, month, city, province, format, output, notes, date } => {
                let options = commands::report::Options { month, city, province, format, output, notes, date, timeout };
                commands::report::report(&config, options).await
            }
            Command::Rules { config } => commands::rules::rules(&config),
            Command::Diff { a, b, config, month, city, province, format } => {
                let options = commands::diff::Options { a, b, month, city, province, format, timeout };
                commands::diff::diff(&config, options).await
            }
            Command::Recount { config, from, to, output, topic, replace_live, margin, threads, partitions } => {
                let json_log = matches!(cli.log_format, LogFormat::Json);
                let options = commands::recount::Options {
                    from,
                    to,
                    output,
                    topic,
                    replace_live,
                    margin,
                    threads: threads.map(usize::from),
                    partitions,
                    json_log,
                };
                commands::recount::recount(&config, options).await
            }
            Command::Replay { file, config, send_invalid } => {
                let json_log = matches!(cli.log_format, LogFormat::Json);
                let options = commands::replay::Options { file, send_invalid, timeout, json_log };
                commands::replay::replay(&config, options).await
            }
            Command::TakeOver { config } => commands::take_over::take_over(&config, timeout).await,
            Command::Rescale { config, partitions } => commands::rescale::rescale(&config, partitions).await,
            Command::Demo { listen, scale, province_rate, exit } => {
                commands::demo::demo(&listen, scale, province_rate, exit).await
            }
        }
    });
    // A pipeline thread still blocked on an unreachable broker must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            if matches!(cli.log_format, LogFormat::Json) {
                // A log shipper reads JSON lines only: the one line that matters is one too.
                commands::json_line(
                    "ERROR",
                    "hotline: stopped on an error",
                    serde_json::json!({ "error": format!("{e:#}") }),
                );
            } else {
                eprintln!("hotline: {e:#}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}
