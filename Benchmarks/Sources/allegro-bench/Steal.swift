import Foundation

/// Time the host took this VM's virtual CPUs away (the "steal" column of /proc/stat, all CPUs
/// together), in milliseconds; 0 where it is not reported. On the 2-core Firecracker VM these
/// benchmarks run on, a stream of fdatasyncs makes the host take the *other* virtual CPU away
/// for up to about 17 ms at a time (BENCHMARKS.md "The host takes a CPU while the disk works"),
/// so a paced run reports how much of its window was stolen beside its lag.
enum Steal {
    static func totalMillis() -> Double {
        guard let stat = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
              let line = stat.split(separator: "\n").first(where: { $0.hasPrefix("cpu ") }) else { return 0 }
        // cpu user nice system idle iowait irq softirq steal ...: ticks of USER_HZ (100 on Linux).
        let fields = line.split(separator: " ")
        guard fields.count > 8, let ticks = Double(fields[8]) else { return 0 }
        return ticks * 10
    }
}
