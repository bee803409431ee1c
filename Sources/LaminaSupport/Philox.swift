/// Philox-4x32-10 (Salmon, Moraes, Dror and Shaw, "Parallel random numbers: as easy as 1, 2, 3",
/// SC 2011; Random123's `philox4x32`): a counter-based generator. Each 128-bit counter under a
/// 64-bit key gives four independent 32-bit words, so any element's random number is computed
/// directly from its position, in any order, on any thread.
///
/// The C runtime has the same function (`runtime/lamina_philox.h`); the interpreter uses this one,
/// and dropout's masks agree bit for bit between them. Both are tested against Random123's
/// published known-answer vectors.
public enum Philox {
  static let multipliers: (UInt32, UInt32) = (0xD251_1F53, 0xCD9E_8D57)
  /// The Weyl sequence's increments (the golden ratio and √3 - 1, in 32 bits) that bump the key.
  static let keyIncrements: (UInt32, UInt32) = (0x9E37_79B9, 0xBB67_AE85)

  /// The four words of `counter` under `key`, after 10 rounds.
  public static func block(counter: [UInt32], key: [UInt32]) -> [UInt32] {
    precondition(
      counter.count == 4 && key.count == 2, "Philox-4x32 takes 4 counter and 2 key words")
    var (c0, c1, c2, c3) = (counter[0], counter[1], counter[2], counter[3])
    var (k0, k1) = (key[0], key[1])
    for round in 0..<10 {
      if round > 0 {
        k0 &+= keyIncrements.0
        k1 &+= keyIncrements.1
      }
      let product0 = UInt64(multipliers.0) * UInt64(c0)
      let product1 = UInt64(multipliers.1) * UInt64(c2)
      let next0 = UInt32(truncatingIfNeeded: product1 >> 32) ^ c1 ^ k0
      let next2 = UInt32(truncatingIfNeeded: product0 >> 32) ^ c3 ^ k1
      c1 = UInt32(truncatingIfNeeded: product1)
      c3 = UInt32(truncatingIfNeeded: product0)
      c0 = next0
      c2 = next2
    }
    return [c0, c1, c2, c3]
  }
}

/// Dropout's random stream: which elements a dropout node keeps in one training step.
///
/// Element `i` of the node with stream id `stream`, in the training step counted `step`, under
/// `seed`: word `i mod 4` of the Philox block at counter `(i / 4, stream, step mod 2^32,
/// step / 2^32)` with key `(seed mod 2^32, seed / 2^32)`. It is kept when that word is at least
/// `threshold` (`rate · 2^32`, rounded down), so it is dropped with probability `rate` (to 2^-32).
/// The C kernel (`lamina_dropout_keeps` in `runtime/lamina_philox.h`) computes the same.
public struct DropoutStream: Sendable, Hashable {
  public var seed: UInt64
  public var step: UInt64
  public var stream: UInt32
  public var threshold: UInt32

  /// Elements past this count would reuse counters (the element's block index is 32 bits).
  public static let elementLimit: Int = 1 << 34

  public init(seed: UInt64, step: UInt64, stream: UInt32, rate: Double) {
    self.seed = seed
    self.step = step
    self.stream = stream
    self.threshold = DropoutStream.threshold(rate: rate)
  }

  /// `rate · 2^32` rounded down, for a rate in [0, 1): the drop threshold the C kernel gets as a
  /// literal, so both sides compare against the same integer.
  public static func threshold(rate: Double) -> UInt32 {
    UInt32((rate * 4_294_967_296).rounded(.down))
  }

  /// Whether each of `count` elements is kept (count below `elementLimit`).
  public func keeps(count: Int) -> [Bool] {
    var kept = [Bool](repeating: false, count: count)
    let key = [UInt32(truncatingIfNeeded: seed), UInt32(truncatingIfNeeded: seed >> 32)]
    var block = 0
    while block * 4 < count {
      let words = Philox.block(
        counter: [
          UInt32(truncatingIfNeeded: block), stream, UInt32(truncatingIfNeeded: step),
          UInt32(truncatingIfNeeded: step >> 32),
        ], key: key)
      for lane in 0..<4 where block * 4 + lane < count {
        kept[block * 4 + lane] = words[lane] >= threshold
      }
      block += 1
    }
    return kept
  }
}
