/// mimalloc instead of the system allocator: the storage drivers allocate on their worker threads
/// and free on the runtime's (every SQLite value read crosses threads that way), which glibc's
/// allocator handles slowly; `decentcom migrate` spent over a third of its time in it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    decentcom::cli::main()
}
