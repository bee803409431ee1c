import Foundation

/// Timing statistics over repeated runs of one operation.
public struct Timing: Sendable {
  /// Seconds per run, in the order measured.
  public var samples: [Double]

  public init(samples: [Double]) { self.samples = samples }

  public var median: Double {
    let sorted = samples.sorted()
    guard !sorted.isEmpty else { return .nan }
    return sorted.count % 2 == 1
      ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
  }
  public var min: Double { samples.min() ?? .nan }
  public var max: Double { samples.max() ?? .nan }

  /// Runs `body` `warmup` times, then times it until it has run at least `runs` times and for at
  /// least `minimumSeconds` (capped at `maximumRuns`).
  public static func measure(
    warmup: Int = 5, runs: Int = 20, minimumSeconds: Double = 0.5, maximumRuns: Int = 100_000,
    _ body: () throws -> Void
  ) rethrows -> Timing {
    for _ in 0..<warmup { try body() }
    var samples: [Double] = []
    var total = 0.0
    while (samples.count < runs || total < minimumSeconds) && samples.count < maximumRuns {
      let start = DispatchTime.now().uptimeNanoseconds
      try body()
      let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
      samples.append(seconds)
      total += seconds
    }
    return Timing(samples: samples)
  }
}

/// A duration in the unit that reads best: `12.3 µs`, `4.56 ms`, `1.20 s`.
public func formatDuration(_ seconds: Double) -> String {
  if seconds.isNaN { return "-" }
  if seconds < 1e-3 { return String(format: "%.1f µs", seconds * 1e6) }
  if seconds < 1 { return String(format: "%.2f ms", seconds * 1e3) }
  return String(format: "%.2f s", seconds)
}
