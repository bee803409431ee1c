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

/// How much faster one configuration is than a baseline timed in the same interleaved rounds: the
/// median over rounds (or blocks of rounds) of baseline time / candidate time, with a 95% confidence interval for that
/// median from order statistics (no assumption about the distribution of the noise). Pairing by
/// round cancels what both calls of a round share (a busy neighbour, a frequency change), so an
/// interval that excludes 1 says the difference is not noise.
public struct PairedSpeedup: Sendable, Equatable {
  public var median: Double
  public var low: Double
  public var high: Double

  public init(median: Double, low: Double, high: Double) {
    (self.median, self.low, self.high) = (median, low, high)
  }

  /// `baseline[i]` and `candidate[i]` are the two calls of round `i`. With `blockSize` > 1 the
  /// ratios are of sums over blocks of that many consecutive rounds: when rounds rotate which
  /// configuration goes first, a block of one rotation has each configuration in each position
  /// once, so the order's effect cancels within a block instead of splitting the ratios into two
  /// clusters whose median could land in either. Nil with fewer than 6 blocks, too few for a 95%
  /// interval.
  public init?(baseline: [Double], candidate: [Double], blockSize: Int = 1) {
    let size = Swift.max(1, blockSize)
    func blockSums(_ samples: [Double]) -> [Double] {
      stride(from: 0, to: samples.count - size + 1, by: size).map {
        samples[$0..<$0 + size].reduce(0, +)
      }
    }
    let ratios = zip(blockSums(baseline), blockSums(candidate)).map { $0 / $1 }.filter(\.isFinite)
      .sorted()
    let count = ratios.count
    guard count >= 6 else { return nil }
    median = Timing(samples: ratios).median
    // The median lies between the order statistics at ranks n/2 ∓ 1.96 √n / 2 (normal approximation
    // of the binomial(n, ½) count of ratios below it).
    let spread = 0.98 * Double(count).squareRoot()
    let lowRank = Swift.max(1, Int((Double(count) / 2 - spread).rounded(.down)))
    let highRank = Swift.min(count, Int((Double(count) / 2 + 1 + spread).rounded(.up)))
    low = ratios[lowRank - 1]
    high = ratios[highRank - 1]
  }
}

/// A duration in the unit that reads best: `12.3 µs`, `4.56 ms`, `1.20 s`.
public func formatDuration(_ seconds: Double) -> String {
  if seconds.isNaN { return "-" }
  if seconds < 1e-3 { return String(format: "%.1f µs", seconds * 1e6) }
  if seconds < 1 { return String(format: "%.2f ms", seconds * 1e3) }
  return String(format: "%.2f s", seconds)
}
