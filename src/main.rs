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
    /// Benchmarks.
    #[command(subcommand)]
    Bench(Bench),
}

#[derive(Subcommand)]
enum Bench {
    /// matvec weight-read GB/s per format next to a plain copy kernel on the same adapter,
    /// and matmul GFLOP/s. LOWBIT_NO_F16=1 / LOWBIT_NO_SUBGROUPS=1 force the fallbacks.
    Kernels {
        /// Weight shapes as K x ROWS (ggml ne[0] x ne[1]).
        #[arg(long, value_delimiter = ',', default_value = "4096x4096,7168x2048")]
        shapes: Vec<String>,
        /// Formats (default: every GPU format).
        #[arg(long, value_delimiter = ',')]
        formats: Vec<String>,
        /// Activation columns for matmul (0 skips it).
        #[arg(long, default_value_t = 512)]
        matmul_cols: usize,
        /// Timed batches per measurement (best is kept).
        #[arg(long, default_value_t = 5)]
        iters: usize,
        /// Size of the copy-kernel buffer, MiB.
        #[arg(long, default_value_t = 256)]
        copy_mib: u64,
    },
}

fn parse_shape(s: &str) -> Result<(usize, usize)> {
    let bad = || Error::Unsupported(format!("shape '{s}' is not K x ROWS, e.g. 4096x4096"));
    let (k, rows) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    Ok((k.trim().parse().map_err(|_| bad())?, rows.trim().parse().map_err(|_| bad())?))
}

fn bench_kernels(shapes: &[String], formats: &[String], matmul_cols: usize, iters: usize, copy_mib: u64) -> Result<()> {
    use lowbit::gpu::{GPU_FORMATS, GpuContext, GpuOptions, bench};
    let formats: Vec<lowbit::BlockType> = if formats.is_empty() {
        GPU_FORMATS.to_vec()
    } else {
        formats.iter().map(|f| lowbit::BlockType::parse(f)).collect::<Result<_>>()?
    };
    let shapes: Vec<(usize, usize)> = shapes.iter().map(|s| parse_shape(s)).collect::<Result<_>>()?;
    let ctx = GpuContext::new(GpuOptions::from_env())?;
    let copy = bench::copy_bandwidth(&ctx, copy_mib << 20, iters, 5)?;
    println!("adapter: {}", ctx.adapter_name);
    println!("features: shader-f16 {}, subgroups {}", ctx.features.f16, ctx.features.subgroups);
    println!("copy kernel: {copy:.2} GB/s (bytes read + written, {copy_mib} MiB buffer)\n");
    println!("| format | K x rows | weights MB | matvec µs | matvec GB/s | of copy | matmul {matmul_cols} cols GFLOP/s |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    for &(k, rows) in &shapes {
        for &ty in &formats {
            let r = bench::bench_format(&ctx, ty, rows, k, matmul_cols, iters)?;
            let gflops = r.matmul_gflops().map_or("-".into(), |g| format!("{g:.1}"));
            println!(
                "| {} | {k} x {rows} | {:.1} | {:.1} | {:.2} | {:.0}% | {gflops} |",
                ty,
                r.weight_bytes as f64 / 1e6,
                r.matvec_s * 1e6,
                r.matvec_gbps,
                100.0 * r.matvec_gbps / copy
            );
        }
    }
    Ok(())
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
        Command::Bench(Bench::Kernels { shapes, formats, matmul_cols, iters, copy_mib }) => bench_kernels(&shapes, &formats, matmul_cols, iters, copy_mib),
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
