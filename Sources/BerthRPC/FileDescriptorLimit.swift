#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

enum FileDescriptorLimit {
    /// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the soft limit now in force.
    ///
    /// Each connection holds one descriptor, and the soft limit is often 1024, well short of a thousand
    /// clients plus the store and the event loops. When the hard limit is "unlimited" the kernel refuses
    /// it as a soft value, so `fs.nr_open`'s usual default is tried instead.
    static func raise() -> Int {
        #if os(Linux)
            let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
        #else
            let resource = RLIMIT_NOFILE
        #endif
        var limits = rlimit()
        guard getrlimit(resource, &limits) == 0 else { return -1 }
        if limits.rlim_cur < limits.rlim_max {
            for candidate in [limits.rlim_max, min(limits.rlim_max, 1 << 20)] {
                var raised = limits
                raised.rlim_cur = candidate
                if setrlimit(resource, &raised) == 0 {
                    limits = raised
                    break
                }
            }
        }
        return Int(clamping: limits.rlim_cur)
    }
}
