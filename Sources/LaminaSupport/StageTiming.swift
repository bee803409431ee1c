import Foundation

/// The wall time of one stage of turning a model into a library: parsing, a pass, code generation,
/// one C compiler call, the link (`lamina compile --timings`).
public struct StageTiming: Sendable, Equatable {
  public var stage: String
  public var seconds: Double

  public init(stage: String, seconds: Double) {
    self.stage = stage
    self.seconds = seconds
  }

  /// Runs `body` and returns its result with the time it took.
  public static func measure<Result>(_ stage: String, _ body: () throws -> Result) rethrows -> (
    Result, StageTiming
  ) {
    let start = DispatchTime.now().uptimeNanoseconds
    let result = try body()
    return (
      result,
      StageTiming(
        stage: stage, seconds: Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
    )
  }
}
