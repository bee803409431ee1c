import Foundation
import Lamina

/// `lamina bench FILE --compare fused,unfused`: the same model compiled with different backend
/// passes, checked equal, then timed in one process with the configurations interleaved call by
/// call, so a noisy machine slows them alike.
enum BenchCompare {
  /// A named set of backend passes.
  struct Configuration {
    var name: String
    var passes: [any GraphPass]
  }

  static let configurationHelp =
    "fused (every backend pass), unfused (no fusion), unplanned (no memory planning), naive (neither), unfolded (inference without its own copy of the graph: batch norm not folded)"

  static func configuration(named name: String) throws -> Configuration {
    let all = Pipeline.codegen
    func without(_ names: Set<String>) -> [any GraphPass] {
      all.filter { !names.contains($0.name) }
    }
    switch name {
    case "fused": return Configuration(name: name, passes: all)
    case "unfused": return Configuration(name: name, passes: without(["fusion"]))
    case "unplanned": return Configuration(name: name, passes: without(["memory-plan"]))
    case "naive": return Configuration(name: name, passes: [])
    case "unfolded": return Configuration(name: name, passes: without([ModeSpecialization.name]))
    default:
      throw UsageError("--compare takes configurations among \(configurationHelp); got '\(name)'")
    }
  }

  struct Candidate {
    var configuration: Configuration
    var compiled: CompiledModel
    /// What the entry point being timed does per call (kernels, copies, intermediates, arena).
    var statistics: EntryPointStatistics
  }

  static func run(
    model: Model, names: [String], training: Bool, batch: Int, runs: Int, seconds: Double,
    compileOptions: CompileOptions, seed: UInt64, json: Bool, console: Console
  ) throws -> Int32 {
    guard names.count >= 2 else {
      throw UsageError("--compare takes two or more configurations, e.g. fused,unfused")
    }
    let configurations = try names.map(configuration(named:))
    let parameters = try model.initialParameters(seed: seed)
    let state = try model.graph.initialState()
    var candidates: [Candidate] = []
    var symbols: [String: Int] = [:]
    for configuration in configurations {
      var options = compileOptions
      options.codegenPasses = configuration.passes
      let compilation = try model.buildLibrary(options: options)
      let compiled = try CompiledModel(
        libraryPath: compilation.libraryPath, threads: options.threads)
      try compiled.setParameters(parameters)
      symbols = Dictionary(uniqueKeysWithValues: compiled.signature.symbols.map { ($0, batch) })
      // The first training step is `train_0`; inference times `forward`.
      let entry = training ? "train_0" : "forward"
      guard let statistics = compilation.generated.statistics.first(where: { $0.name == entry })
      else {
        throw RunError("the compiled model has no entry point \(entry)")
      }
      candidates.append(
        Candidate(configuration: configuration, compiled: compiled, statistics: statistics))
    }
    let forwardNames = Set(
      candidates[0].compiled.signature.inputs.filter { $0.forward == true }.map(\.name))
    try SampleInputs.checkAllocations(for: model.graph, symbols: symbols)
    let allInputs = SampleInputs.make(for: model.graph, symbols: symbols, seed: 1)
    let inputs = training ? allInputs : allInputs.filter { forwardNames.contains($0.key) }

    // Equal results first: the outputs, or one training step's loss, parameters and state.
    let reference = candidates[0]
    if training {
      let referenceLoss = try reference.compiled.trainStep(inputs)
      let referenceValues = try reference.compiled.parameters().merging(
        try reference.compiled.state()
      ) { a, _ in a }
      for candidate in candidates.dropFirst() {
        let loss = try candidate.compiled.trainStep(inputs)
        guard abs(loss - referenceLoss) <= 1e-4 * max(1, abs(referenceLoss)) else {
          throw RunError(
            "\(candidate.configuration.name)'s training step loss \(loss) differs from \(reference.configuration.name)'s \(referenceLoss)"
          )
        }
        let values = try candidate.compiled.parameters().merging(try candidate.compiled.state()) {
          a, _ in a
        }
        try checkClose(
          values, referenceValues, what: "after one training step",
          names: (candidate.configuration.name, reference.configuration.name))
      }
      // Every configuration starts timing from the same weights.
      for candidate in candidates {
        try candidate.compiled.setParameters(parameters)
        try candidate.compiled.setState(state)
      }
    } else {
      let referenceOutputs = try reference.compiled.forward(inputs)
      for candidate in candidates.dropFirst() {
        try checkClose(
          try candidate.compiled.forward(inputs), referenceOutputs, what: "outputs",
          names: (candidate.configuration.name, reference.configuration.name))
      }
    }

    // Interleaved timing: warm-up, then rounds of one call per configuration. Inputs and outputs
    // are bound once (outputs written into the same buffers every call, as the copy below is), so
    // each timed call is the compiled code alone: not the allocator, nor the checking and binding
    // of inputs that both configurations share.
    let boundForwards = try training ? [] : candidates.map { try $0.compiled.bindForward(inputs) }
    let boundSteps = try training ? candidates.map { try $0.compiled.bindTrainStep(inputs) } : []
    func call(_ index: Int) throws {
      if training {
        try boundSteps[index].run()
      } else {
        try boundForwards[index].run()
      }
    }
    // The memory-bandwidth bound of inference: one copy of the largest input, in the same rounds.
    let largest = training ? nil : inputs.max { $0.value.byteCount < $1.value.byteCount }
    let copyDestination = UnsafeMutableRawPointer.allocate(
      byteCount: max(64, largest?.value.byteCount ?? 0), alignment: 64)
    defer { copyDestination.deallocate() }
    func copyLargest() {
      largest?.value.withUnsafeBytes { source in
        copyDestination.copyMemory(from: source.baseAddress!, byteCount: source.count)
      }
    }
    // The same copy split over as many threads as the models use: the bound on every core.
    let copyThreads =
      compileOptions.threads > 0
      ? compileOptions.threads : ProcessInfo.processInfo.activeProcessorCount
    func copyLargestInParallel() {
      largest?.value.withUnsafeBytes { source in
        let share = (source.count / copyThreads + 63) / 64 * 64
        // Addresses, not pointers, cross into the concurrent closure (pointers are not Sendable).
        let (from, to, count) = (
          UInt(bitPattern: source.baseAddress!), UInt(bitPattern: copyDestination), source.count
        )
        DispatchQueue.concurrentPerform(iterations: copyThreads) { part in
          let begin = min(part * share, count)
          let end = min(begin + share, count)
          guard begin < end, let target = UnsafeMutableRawPointer(bitPattern: to + UInt(begin)),
            let origin = UnsafeRawPointer(bitPattern: from + UInt(begin))
          else { return }
          target.copyMemory(from: origin, byteCount: end - begin)
        }
      }
    }
    for _ in 0..<5 { for index in candidates.indices { try call(index) } }
    var samples = [[Double]](repeating: [], count: candidates.count)
    var copySamples: [Double] = []
    var parallelCopySamples: [Double] = []
    var total = 0.0
    var round = 0
    while samples[0].count < runs || total < seconds * Double(candidates.count) {
      round += 1
      if largest != nil {
        copySamples.append(secondsTaken(copyLargest))
        parallelCopySamples.append(secondsTaken(copyLargestInParallel))
      }
      // Each round starts with the next configuration, so none is always first. Each timed call
      // sees what one model running alone would: the other configurations' threads asleep (a
      // spinning idle pool holds a core), its own awake and its caches warm from an untimed call.
      for offset in candidates.indices {
        let index = (offset + round) % candidates.count
        for other in candidates.indices where other != index { candidates[other].compiled.idle() }
        try call(index)
        let elapsed = try secondsTaken { try call(index) }
        samples[index].append(elapsed)
        total += elapsed
      }
      if samples[0].count >= 100_000 { break }
    }
    let timings = samples.map(Timing.init(samples:))
    let copyTiming = Timing(samples: copySamples)
    let parallelCopyTiming = Timing(samples: parallelCopySamples)
    let baseline = timings.last!.median
    let paired = samples.map {
      PairedSpeedup(baseline: samples.last!, candidate: $0, blockSize: candidates.count)
    }

    if json {
      let entries = candidates.indices.map { index in
        let (candidate, timing) = (candidates[index], timings[index])
        let interval =
          paired[index].map {
            ", \"paired_speedup\": \($0.median), \"paired_speedup_low\": \($0.low), \"paired_speedup_high\": \($0.high)"
          } ?? ""
        return
          "\"\(candidate.configuration.name)\": {\"median_seconds\": \(timing.median), \"min_seconds\": \(timing.min), \"max_seconds\": \(timing.max), \"runs\": \(timing.samples.count), \"kernels\": \(candidate.statistics.kernelLaunches), \"copies\": \(candidate.statistics.copies), \"intermediate_bytes\": \(candidate.statistics.intermediateBytes(symbols)), \"arena_bytes\": \(candidate.statistics.arenaBytes(symbols)), \"speedup\": \(baseline / timing.median)\(interval)}"
      }
      let copyEntry =
        largest.map {
          ", \"copy_\($0.key)\": {\"median_seconds\": \(copyTiming.median), \"min_seconds\": \(copyTiming.min), \"bytes\": \($0.value.byteCount)}, \"parallel_copy_\($0.key)\": {\"median_seconds\": \(parallelCopyTiming.median), \"min_seconds\": \(parallelCopyTiming.min), \"threads\": \(copyThreads)}"
        } ?? ""
      console.print(
        "{\"model\": \"\(model.graph.name)\", \"batch\": \(batch), \"call\": \"\(training ? "train step" : "forward")\", "
          + entries.joined(separator: ", ") + copyEntry + "}")
      return 0
    }
    let symbolText =
      symbols.isEmpty
      ? "no symbolic dimensions"
      : symbols.map { "\($0.key) = \($0.value)" }.sorted().joined(separator: ", ")
    console.print(
      "model \(model.graph.name), \(symbolText), \(training ? "training step" : "forward"), \(timings[0].samples.count) interleaved rounds"
    )
    console.print("")
    console.print(
      "config         median        min        max  kernels+copies  intermediates      arena   speedup   paired (95% CI)"
    )
    for (candidate, (timing, pairedSpeedup)) in zip(candidates, zip(timings, paired)) {
      let columns = [
        formatDuration(timing.median), formatDuration(timing.min), formatDuration(timing.max),
      ].map { $0.leftPadded(11) }.joined()
      let statistics = candidate.statistics
      let name = candidate.configuration.name.padding(toLength: 10, withPad: " ", startingAt: 0)
      let launches = "\(statistics.kernelLaunches) + \(statistics.copies)".leftPadded(16)
      let intermediates = formatBytes(statistics.intermediateBytes(symbols)).leftPadded(15)
      let arena = formatBytes(statistics.arenaBytes(symbols)).leftPadded(11)
      let speedup = String(format: "%9.2fx", baseline / timing.median)
      let interval =
        pairedSpeedup.map { String(format: "   %.2fx [%.2f, %.2f]", $0.median, $0.low, $0.high) }
        ?? ""
      console.print(name + columns + launches + intermediates + arena + speedup + interval)
    }
    console.print(
      "\nspeedup: the last configuration's median time over each one's; results checked equal first"
    )
    console.print(
      "paired: the median over blocks of \(candidates.count) rounds (one rotation of who goes first) of the last configuration's time over this one's, with a 95% confidence interval; an interval that excludes 1.00 is not noise within this run"
    )
    if let largest {
      console.print(
        "memory bound: one copy of \(largest.key) (\(formatBytes(largest.value.byteCount))) takes \(formatDuration(copyTiming.median)) (min \(formatDuration(copyTiming.min))); \(candidates[0].configuration.name) is \(String(format: "%.2f", timings[0].median / copyTiming.median))x that (medians)"
      )
      console.print(
        "split over \(copyThreads) threads the copy takes \(formatDuration(parallelCopyTiming.median)) (min \(formatDuration(parallelCopyTiming.min))); \(candidates[0].configuration.name) is \(String(format: "%.2f", timings[0].median / parallelCopyTiming.median))x that"
      )
    }
    return 0
  }

  /// Wall-clock seconds `body` takes.
  static func secondsTaken(_ body: () throws -> Void) rethrows -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    try body()
    return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
  }

  static func checkClose(
    _ actual: [String: Tensor], _ expected: [String: Tensor], what: String,
    names: (String, String)
  ) throws {
    for (name, tensor) in expected.sorted(by: { $0.key < $1.key }) {
      guard let other = actual[name] else { continue }
      let (a, b) = (other.doubles(), tensor.doubles())
      let scale = b.map(abs).max() ?? 1
      let worst = zip(a, b).map { abs($0 - $1) }.max() ?? 0
      guard a.count == b.count, worst <= 1e-4 * max(scale, 1) else {
        throw RunError(
          "\(names.0) and \(names.1) differ in '\(name)' (\(what)) by \(worst); not timing a wrong result"
        )
      }
    }
  }

  static func formatBytes(_ bytes: Int) -> String {
    if bytes < 1024 { return "\(bytes) B" }
    if bytes < 1024 * 1024 { return String(format: "%.1f KiB", Double(bytes) / 1024) }
    return String(format: "%.2f MiB", Double(bytes) / 1024 / 1024)
  }
}
