import Foundation
import Lamina

/// `lamina dump FILE`: prints the IR, a Graphviz drawing, or the parameter table.
enum DumpCommand: Command {
  static let name = "dump"
  static let summary = "Print a model's IR (text or Graphviz) or its parameters"
  static let help = """
    usage: lamina dump FILE [--model NAME] [--format ir|dot] [--after PASS|all] [--train] [--locations]
                       [--explain] [--params] [--passes A,B,...] [--disable-pass P]

    Prints the typed IR after the pipeline. FILE is a .lam model or IR text (dump's own output reads back
    to the same text).
      --format dot     Graphviz instead of IR text
      --after PASS     print the IR after the named pass (`all`: after every pass; `lamina passes` lists
                       them); backend passes run on the result of the training pipeline for `all`
                       and with --train, of the inference pipeline otherwise (as `lamina compile`)
      --train          use the training pipeline (backward graph and updates), as `compile --train`
      --locations      add loc(line:column:length) to every node
      --explain        with --after fusion (or all): after the fused IR, for every pair of neighbouring
                       ops left in separate kernels, the rule that kept them apart (as // comments)
      --params         list every parameter with its shape, initializer and size, then the
                       model state (batch norm's running statistics), marked "state" ("frozen
                       state" under a `freeze` pattern: kept as loaded, never updated)
    \(OptionSpec.passSelectionHelp)
    """
  static let options = OptionSpec(
    valued: ["--model", "--format", "--after"],
    switches: ["--locations", "--params", "--train", "--explain"]
  ).selectingPasses

  static func run(_ options: inout Options, console: Console) throws -> Int32 {
    let path = try options.modelPath()
    let format = options.value("--format") ?? "ir"
    guard format == "ir" || format == "dot" else {
      throw UsageError("--format takes ir or dot, got '\(format)'")
    }
    let printer = IRPrinter(printLocations: options.isSet("--locations"))
    let render: @Sendable (Graph) -> String = { graph in
      format == "dot" ? DotPrinter().print(graph) : printer.print(graph)
    }
    let explain = options.isSet("--explain")
    if explain, let after = options.value("--after"), after != Fusion.name, after != "all" {
      throw UsageError(
        "--explain goes with --after \(Fusion.name) (or --after all), got --after \(after)")
    }
    if explain, options.value("--after") == nil {
      throw UsageError("--explain goes with --after \(Fusion.name) (or --after all)")
    }
    if let after = options.value("--after") {
      let known = Pipeline.knownPasses.map(\.name)
      guard after == "all" || known.contains(after) else {
        throw UsageError(
          "no pass named '\(after)' (passes: \(known.joined(separator: ", ")))"
            + (closestName(to: after, among: known).map { "; did you mean '\($0)'?" } ?? ""))
      }
      // Passes that only training runs (autodiff) need the training pipeline.
      let needsTraining =
        after == "all" || options.isSet("--train")
        || Pipeline.training.contains { $0.name == after }
          && !Pipeline.inference.contains { $0.name == after }
      let middle = try options.selectedPasses(
        needsTraining ? Pipeline.training : Pipeline.inference)
      let backend = try options.selectedPasses(Pipeline.codegen)
      guard after == "all" || (middle + backend).contains(where: { $0.name == after }) else {
        throw UsageError("pass '\(after)' does not run: --passes or --disable-pass leaves it out")
      }
      let printAfter: @Sendable (String, Graph) -> Void = { pass, graph in
        guard after == "all" || after == pass else { return }
        console.print("// after \(pass)")
        console.print(render(graph), terminator: "")
        // Kernel schedules and the memory plan are not IR: they follow as `//` comments, so the
        // dump still reads back.
        if format == "ir" && pass == Fusion.name {
          console.print(KernelSchedulePrinter().print(graph), terminator: "")
        }
        if format == "ir" && !graph.memoryPlans.isEmpty {
          console.print(MemoryPlanPrinter().print(graph), terminator: "")
        }
      }
      let model = try Model(
        contentsOf: path, modelName: options.value("--model"), pipeline: middle,
        afterPass: printAfter)
      // Backend passes run on a copy of the middle pipeline's result, as before C generation.
      if !backend.isEmpty, after == "all" || backend.contains(where: { $0.name == after }) {
        var lowered = model.graph
        for pass in backend {
          let unfused = explain && pass.name == Fusion.name ? Fusion.explain(lowered) : nil
          _ = try PassRunner(passes: [pass], afterPass: printAfter).run(&lowered)
          if let unfused {
            console.print(explanation(unfused), terminator: "")
          }
        }
      }
      return 0
    }
    let model = try loadModel(
      path, modelName: options.value("--model"),
      pipeline: try options.selectedPasses(
        options.isSet("--train") ? Pipeline.training : Pipeline.inference), console: console)
    if options.isSet("--params") {
      console.print(parameterTable(model.graph), terminator: "")
    } else {
      console.print(render(model.graph), terminator: "")
    }
    return 0
  }

  /// The unfused pairs as `//` comments, so the dump still reads back as IR.
  static func explanation(_ pairs: [UnfusedPair]) -> String {
    var out = "// fusion: why neighbouring ops stay in separate kernels (\(pairs.count) pairs)\n"
    for pair in pairs {
      out += "//   \(pair.producer) -> \(pair.consumer)\n//     \(pair.reason)\n"
    }
    return out
  }

  /// One line per parameter, then the total.
  static func parameterTable(_ graph: Graph) -> String {
    var rows: [[String]] = [["name", "type", "initializer", "elements", "bytes", "trainable"]]
    var totalElements = 0
    var totalBytes = 0
    for param in graph.params {
      let type = graph.type(of: param.value)
      let elements = type.concreteShape([:])?.reduce(1, *) ?? 0
      let bytes = elements * type.dtype.byteSize
      totalElements += elements
      totalBytes += bytes
      rows.append([
        TerminalText.escaped(graph[param.value].name), type.description,
        TerminalText.escaped(param.initializer.description), String(elements),
        String(bytes), param.trainable ? "yes" : "frozen",
      ])
    }
    // Model state (running statistics) is saved with the parameters but never trained.
    let modelStates = graph.modelStates
    for state in modelStates {
      let type = graph.type(of: state.value)
      let elements = type.concreteShape([:])?.reduce(1, *) ?? 0
      rows.append([
        TerminalText.escaped(graph[state.value].name), type.description,
        TerminalText.escaped(state.initializer.description), String(elements),
        String(elements * type.dtype.byteSize),
        // No update rule: a frozen batch_norm's running statistics, kept as loaded.
        graph.stateUpdates.contains { $0.target == state.value } ? "state" : "frozen state",
      ])
    }
    let widths = (0..<rows[0].count).map { column in rows.map { $0[column].count }.max()! }
    var out = ""
    for row in rows {
      out +=
        zip(row, widths).map { $0.padding(toLength: $1, withPad: " ", startingAt: 0) }
        .joined(separator: "  ").trimmingCharacters(in: .whitespaces) + "\n"
    }
    out += "\(graph.params.count) parameters, \(totalElements) elements, \(totalBytes) bytes\n"
    if !modelStates.isEmpty {
      let elements = modelStates.map {
        graph.type(of: $0.value).concreteShape([:])?.reduce(1, *) ?? 0
      }
      let bytes = zip(modelStates, elements).map { $1 * graph.type(of: $0.value).dtype.byteSize }
      out +=
        "\(modelStates.count) model state tensors (trainable \"state\": updated by training steps, saved with the weights), \(elements.reduce(0, +)) elements, \(bytes.reduce(0, +)) bytes\n"
    }
    return out
  }
}
