//! The `nethouse` binary: the allocator, huge pages off, then the command line (`cli`).

// Start-up allocates one small object per string of every lease; mimalloc makes that (and
// the steady state) markedly cheaper than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;

/// mimalloc asks for transparent huge pages on its arenas. Where the kernel's THP defrag policy
/// is `madvise` (common), each first touch of a 2 MiB page can stall in direct compaction:
/// reading a million leases back then took 1.9–2.9 s instead of a steady 1.6 s (BENCHMARKS.md).
/// Regular pages cost NetHouse nothing measurable on the serving path.
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

#[tokio::main]
async fn main() {
    no_transparent_huge_pages();
    let cli = nethouse::cli::Cli::parse();
    if let Err(e) = nethouse::cli::run(cli).await {
        // Each error's text already carries its cause.
        eprintln!("nethouse: {e}");
        std::process::exit(1);
    }
}
