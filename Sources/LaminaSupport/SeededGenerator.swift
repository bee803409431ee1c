import Foundation

/// A small deterministic random number generator (SplitMix64).
///
/// Used for parameter initialization and data shuffling: the same seed gives the same numbers on every
/// machine and every run, which `SystemRandomNumberGenerator` does not.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
  private var state: UInt64

  public init(seed: UInt64) { state = seed }

  /// A generator for one named stream under a global seed, so that adding a parameter does not change
  /// the initial values of the others.
  public init(seed: UInt64, stream name: String) {
    state = seed ^ StableHash.fnv1a64(name)
    _ = next()
  }

  public mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }

  /// A uniform double in [0, 1) with 53 random bits.
  public mutating func nextUnit() -> Double {
    Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0)
  }

  /// A standard normal sample (Box-Muller).
  public mutating func nextNormal() -> Double {
    var u1 = nextUnit()
    while u1 <= .leastNonzeroMagnitude { u1 = nextUnit() }
    let u2 = nextUnit()
    return (-2 * log(u1)).squareRoot() * cos(2 * .pi * u2)
  }
}

/// Hashes that are the same in every process (Swift's `Hasher` is seeded per process).
public enum StableHash {
  public static func fnv1a64(_ text: String) -> UInt64 {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in text.utf8 {
      hash ^= UInt64(byte)
      hash = hash &* 0x100_0000_01b3
    }
    return hash
  }
}
