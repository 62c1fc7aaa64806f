//! The `lowbit` command line. Every subcommand only calls the library.

use clap::{Parser, Subcommand};
use lowbit::gguf::File;
use lowbit::{Error, Result};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "lowbit",
    version,
    about = "Dynamic low-bit quantization and GPU inference for GGUF models"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print metadata, the tensor table, total size and bits per weight per tensor class.
    Inspect {
        /// A GGUF file (any shard of a split model).
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Write one tensor dequantized as little-endian f32, ggml element order (ne[0] fastest).
    Dequant {
        file: PathBuf,
        tensor: String,
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
    },
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Inspect { file, json } => {
            let model = File::open(&file)?;
            let text = if json {
                serde_json::to_string_pretty(&lowbit::inspect::to_json(&model))
                    .expect("JSON values always serialize")
            } else {
                lowbit::inspect::report(&model)
            };
            let mut stdout = std::io::stdout().lock();
            // A closed pipe (`lowbit inspect … | head`) is not an error worth reporting.
            let _ = writeln!(stdout, "{text}");
            Ok(())
        }
        Command::Dequant {
            file,
            tensor,
            output,
        } => {
            let model = File::open(&file)?;
            let values = model.tensor(&tensor)?.dequantize()?;
            let bytes: &[u8] = bytemuck::cast_slice(&values);
            let dir = output
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io(dir, e))?;
            let io = |e| Error::io(&output, e);
            tmp.write_all(bytes).map_err(io)?;
            tmp.as_file().sync_all().map_err(io)?;
            tmp.persist(&output)
                .map_err(|e| Error::io(&output, e.error))?;
            eprintln!("{tensor}: {} values -> {}", values.len(), output.display());
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
