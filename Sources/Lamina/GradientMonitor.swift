import Foundation
import LaminaIR
import LaminaSupport

/// Computes a training step's parameter gradients at the trained model's current parameters,
/// outside its training step: the compiled train step stays as it is (no extra outputs, no
/// slowdown), and gradients cost one forward and backward pass each time they are recorded.
public protocol GradientProbe {
  /// Every trained parameter's gradient of the step's loss on `inputs`, by parameter name, at
  /// `parameters` and `state` (model state and the random generator's, as `TrainableModel.state()`).
  func gradients(
    inputs: [String: Tensor], parameters: [String: Tensor], state: [String: Tensor]
  ) throws -> [String: Tensor]
}

/// Gradients from a compiled copy of the training graph whose outputs are the step's gradients
/// (and which has no updates): `evaluate` in training mode computes them as the step does.
public final class CompiledGradientProbe: GradientProbe {
  let compiled: CompiledModel
  /// The output holding each parameter's gradient.
  let outputs: [(parameter: String, output: String)]
  let stateNames: Set<String>

  /// Compiles the probe for `step` of `model` (which went through `Pipeline.training`).
  public init(model: Model, step: String? = nil, options: CompileOptions = CompileOptions()) throws
  {
    let trainStep = try model.trainStep(named: step)
    var graph = model.graph
    let entries = graph.gradients.filter { $0.step == trainStep.name }
    // Output names are the probe's own: parameter names are user strings and stay out of the C.
    let outputs = entries.enumerated().map { index, entry in
      (graph[entry.parameter].name, "gradient_\(index)")
    }
    graph.outputs = zip(entries, outputs).map { NamedValue(name: $1.1, value: $0.gradient) }
    graph.assignments = []
    graph.name += "_gradients"
    compiled = try Model.compile(graph: graph, options: options)
    self.outputs = outputs
    stateNames = Set(compiled.signature.states.map(\.name))
  }

  public func gradients(
    inputs: [String: Tensor], parameters: [String: Tensor], state: [String: Tensor]
  ) throws -> [String: Tensor] {
    try compiled.setParameters(parameters)
    try compiled.setState(state.filter { stateNames.contains($0.key) })
    let values = try compiled.evaluate(inputs, mode: .training).outputs
    var result: [String: Tensor] = [:]
    for (parameter, output) in outputs { result[parameter] = values[output] }
    return result
  }
}

/// Gradients by the reference interpreter (`lamina train --interpret`).
public struct InterpretedGradientProbe: GradientProbe {
  public let model: Model
  public let step: String?

  public init(model: Model, step: String? = nil) {
    self.model = model
    self.step = step
  }

  public func gradients(
    inputs: [String: Tensor], parameters: [String: Tensor], state: [String: Tensor]
  ) throws -> [String: Tensor] {
    let modelState = Set(model.graph.modelStates.map { model.graph[$0.value].name })
    var values = try model.interpretGradients(
      inputs: inputs,
      parameters: parameters.merging(state.filter { modelState.contains($0.key) }) { a, _ in a },
      step: step)
    values.removeValue(forKey: "loss")
    return values
  }
}

/// Records every trained parameter's gradient norm while a `Trainer` trains, and says when the
/// gradients vanish or explode.
///
///     let monitor = try GradientMonitor(
///       model: model, trainable: compiled, probe: CompiledGradientProbe(model: model),
///       batch: train.gather(0..<32))
///     try trainer.fit(train: train, epochs: 20, batchSize: 32, callbacks: [monitor])
///     try monitor.writePlot(to: "grads.svg")  // and grads.csv beside it
///     for warning in monitor.warnings() { print(warning.message) }
///
/// Gradients are taken on one fixed batch (`batch`), so the curves show the parameters changing,
/// not the batches: at the start, then after every epoch (or every `every` steps).
public final class GradientMonitor: TrainingCallback {
  /// The norms at one moment of training.
  public struct Record: Sendable, Equatable {
    /// Training steps taken (0: before the first).
    public var step: Int
    /// The epoch the steps belong to (0 for the record before training).
    public var epoch: Int
    /// The L2 norm of each parameter's gradient, in `parameters` order.
    public var norms: [Double]
  }

  /// A layer: the parameters sharing a scope (`dense_3.weight` and `dense_3.bias` are `dense_3`).
  public struct Layer: Sendable, Equatable {
    public var name: String
    /// Indices into `parameters`.
    public var parameters: [Int]
  }

  /// What the gradients show.
  public struct Warning: Sendable, Equatable {
    public enum Kind: Sendable, Equatable { case vanishing, exploding }
    public var kind: Kind
    /// The parameters concerned.
    public var parameters: [String]
    /// One line, names escaped for a terminal.
    public var message: String
  }

  /// The trained parameters, in the model's order.
  public let parameters: [String]
  public let layers: [Layer]
  /// Record every this many steps; nil: after every epoch.
  public let every: Int?
  public private(set) var records: [Record] = []
  let trainable: any TrainableModel
  let probe: any GradientProbe
  let batch: [String: Tensor]

  /// The first layers' norms below this fraction of the last layer's: vanishing.
  public static let vanishingRatio = 1e-4
  /// A norm this many times its value earlier in the same epoch: exploding.
  public static let explodingGrowth = 1000.0
  static let remedies =
    "remedies: He initialization (init: \"he_normal\"), ReLU activations, batch_norm, residual connections, clip_norm in the optimizer"

  /// Takes the first record (before training, or at `startStep` when resuming) right away.
  public init(
    model: Model, trainable: any TrainableModel, probe: any GradientProbe,
    batch: [String: Tensor], step: String? = nil, every: Int? = nil, startStep: Int = 0,
    startEpoch: Int = 0
  ) throws {
    if let every, every < 1 {
      throw RunError("gradients are recorded every N steps with N at least 1, got \(every)")
    }
    let trainStep = try model.trainStep(named: step)
    let names = model.graph.gradients.filter { $0.step == trainStep.name }.map {
      model.graph[$0.parameter].name
    }
    guard !names.isEmpty else {
      throw RunError("training step '\(trainStep.name)' trains no parameter: no gradient to record")
    }
    parameters = names
    var layers: [Layer] = []
    for (index, name) in names.enumerated() {
      let layer = name.lastIndex(of: ".").map { String(name[..<$0]) } ?? name
      if let last = layers.indices.last, layers[last].name == layer {
        layers[last].parameters.append(index)
      } else {
        layers.append(Layer(name: layer, parameters: [index]))
      }
    }
    self.layers = layers
    self.every = every
    self.trainable = trainable
    self.probe = probe
    self.batch = batch
    try record(step: startStep, epoch: startEpoch)
  }

  public func stepEnded(_ progress: StepProgress) throws {
    guard let every, progress.globalStep % every == 0 else { return }
    try record(step: progress.globalStep, epoch: progress.epoch)
  }

  public func epochEnded(_ metrics: EpochMetrics, history: [EpochMetrics]) throws {
    guard every == nil else { return }
    let steps = records.last.map { $0.step } ?? 0
    try record(step: steps + metrics.steps, epoch: metrics.epoch)
  }

  /// Records the gradient norms now.
  public func record(step: Int, epoch: Int) throws {
    let gradients = try probe.gradients(
      inputs: batch, parameters: try trainable.parameters(), state: try trainable.state())
    let norms = try parameters.map { name -> Double in
      guard let gradient = gradients[name] else {
        throw RunError("the gradient probe gave no gradient for '\(TerminalText.escaped(name))'")
      }
      return Foundation.sqrt(gradient.doubles().reduce(0) { $0 + $1 * $1 })
    }
    records.append(Record(step: step, epoch: epoch, norms: norms))
  }

  /// A layer's norm: the norm of all its parameters' gradients together.
  public func layerNorm(_ layer: Layer, in record: Record) -> Double {
    Foundation.sqrt(layer.parameters.reduce(0) { $0 + record.norms[$1] * record.norms[$1] })
  }

  /// Vanishing gradients (at the last record) and exploding ones (within any epoch).
  public func warnings() -> [Warning] {
    var result: [Warning] = []
    if let last = records.last, layers.count > 1 {
      let reference = layerNorm(layers[layers.count - 1], in: last)
      var vanishing: [Layer] = []
      for layer in layers.dropLast() {
        guard layerNorm(layer, in: last) < Self.vanishingRatio * reference else { break }
        vanishing.append(layer)
      }
      if reference > 0, reference.isFinite, let first = vanishing.first {
        let names = vanishing.flatMap { $0.parameters.map { parameters[$0] } }
        let ratio = layerNorm(first, in: last) / reference
        result.append(
          Warning(
            kind: .vanishing, parameters: names,
            message:
              "vanishing gradients after \(last.step) steps: the gradient norms of \(Self.list(names)) are below \(Self.vanishingRatio) of the last layer's (\(TerminalText.escaped(first.name)) \(Self.format(ratio)) times \(TerminalText.escaped(layers[layers.count - 1].name))'s \(Self.format(reference))); \(Self.remedies)"
          ))
      }
    }
    var exploding: [(name: String, epoch: Int, growth: Double)] = []
    for (index, name) in parameters.enumerated() {
      var worst: (epoch: Int, growth: Double)?
      for epoch in Set(records.map(\.epoch)).sorted() where epoch > 0 {
        // The epoch's records, after the last one before it (the epoch's starting point).
        let before = records.last { $0.epoch < epoch }
        let window = (before.map { [$0] } ?? []) + records.filter { $0.epoch == epoch }
        var smallest = Double.infinity
        for record in window {
          let norm = record.norms[index]
          let growth = norm.isFinite ? norm / smallest : .infinity
          if smallest.isFinite, smallest > 0, growth >= Self.explodingGrowth,
            worst.map({ growth > $0.growth }) ?? true
          {
            worst = (epoch, growth)
          }
          if norm.isFinite { smallest = min(smallest, norm) }
        }
      }
      if let worst { exploding.append((name, worst.epoch, worst.growth)) }
    }
    if !exploding.isEmpty {
      let details = exploding.prefix(5).map {
        "\(TerminalText.escaped($0.name)) \($0.growth.isFinite ? Self.format($0.growth) + "x" : "to a non-finite value") in epoch \($0.epoch)"
      }
      result.append(
        Warning(
          kind: .exploding, parameters: exploding.map(\.name),
          message:
            "exploding gradients: \(exploding.count) gradient norm\(exploding.count == 1 ? "" : "s") grew \(Int(Self.explodingGrowth))x or more within an epoch (\(details.joined(separator: ", "))\(exploding.count > 5 ? ", ..." : "")); \(Self.remedies)"
        ))
    }
    return result
  }

  static func list(_ names: [String]) -> String {
    let shown = names.prefix(8).map { TerminalText.escaped($0) }.joined(separator: ", ")
    return names.count > 8 ? "\(shown) and \(names.count - 8) more" : shown
  }

  static func format(_ value: Double) -> String { String(format: "%.2g", value) }

  // MARK: Files

  /// The CSV written beside a plot: `grads.svg` gives `grads.csv`.
  public static func csvPath(forPlot path: String) -> String {
    // Text, not URL: a relative path stays relative in what the command prints.
    guard path.lowercased().hasSuffix(".svg") else { return path + ".csv" }
    return String(path.dropLast(4)) + ".csv"
  }

  /// One row per record: step, epoch, then each parameter's norm (a column per parameter).
  public func csv() -> String {
    func field(_ text: String) -> String {
      // RFC 4180 quoting; a leading = + - @ would be a formula to a spreadsheet.
      var text = text
      if let first = text.first, "=+-@".contains(first) { text = "'" + text }
      guard text.contains(where: { ",\"\n\r".contains($0) }) else { return text }
      return "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
    var out = (["step", "epoch"] + parameters.map(field)).joined(separator: ",") + "\n"
    for record in records {
      out +=
        ([String(record.step), String(record.epoch)]
        + record.norms.map { String(format: "%.6e", $0) }).joined(separator: ",") + "\n"
    }
    return out
  }

  /// Writes the plot (SVG) to `path` and the CSV beside it, each atomically.
  public func writePlot(to path: String, title: String = "") throws {
    try AtomicFile.write(Data(csv().utf8), to: Self.csvPath(forPlot: path))
    try AtomicFile.write(Data(svg(title: title).utf8), to: path)
  }

  /// Each layer's gradient norm against training steps on a log scale, first layer dark, last
  /// bright.
  public func svg(title: String = "") -> String {
    let plot = (left: 80.0, top: 44.0, width: 600.0, height: 360.0)
    let legendWidth = 190.0
    let width = plot.left + plot.width + legendWidth + 20
    let height = max(plot.top + plot.height + 50, plot.top + Double(layers.count) * 16 + 30)
    var out = """
      <?xml version="1.0" encoding="UTF-8"?>
      <svg xmlns="http://www.w3.org/2000/svg" width="\(svgNumber(width))" height="\(svgNumber(height))" \
      viewBox="0 0 \(svgNumber(width)) \(svgNumber(height))" font-family="Helvetica, Arial, sans-serif" font-size="12">
      <rect width="100%" height="100%" fill="white"/>

      """
    let heading =
      title.isEmpty ? "Gradient norm per layer" : "\(title): gradient norm per layer"
    out +=
      "<text x=\"\(svgNumber(plot.left + plot.width / 2))\" y=\"22\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">\(svgEscape(heading))</text>\n"
    let series = layers.map { layer in
      records.map { (Double($0.step), layerNorm(layer, in: $0)) }.filter {
        $0.1 > 0 && $0.1.isFinite
      }
    }
    let logs = series.flatMap { $0.map { log10($0.1) } }
    var low = (logs.min() ?? -1).rounded(.down)
    var high = (logs.max() ?? 0).rounded(.up)
    if high <= low {
      low -= 1
      high += 1
    }
    let steps = records.map { Double($0.step) }
    let xLow = steps.min() ?? 0
    let xHigh = max(steps.max() ?? 1, xLow + 1)
    func px(_ x: Double) -> Double { plot.left + (x - xLow) / (xHigh - xLow) * plot.width }
    func py(_ logValue: Double) -> Double {
      plot.top + plot.height - (logValue - low) / (high - low) * plot.height
    }
    out +=
      "<rect x=\"\(svgNumber(plot.left))\" y=\"\(svgNumber(plot.top))\" width=\"\(svgNumber(plot.width))\" height=\"\(svgNumber(plot.height))\" fill=\"none\" stroke=\"#444\"/>\n"
    // A tick per power of ten, thinned to at most 12.
    let decades = Int(high - low)
    let stride = max(1, (decades + 11) / 12)
    for exponent in Swift.stride(from: Int(low), through: Int(high), by: stride) {
      let y = py(Double(exponent))
      out +=
        "<line x1=\"\(svgNumber(plot.left))\" y1=\"\(svgNumber(y))\" x2=\"\(svgNumber(plot.left + plot.width))\" y2=\"\(svgNumber(y))\" stroke=\"#e5e5e5\"/>\n"
      out +=
        "<text x=\"\(svgNumber(plot.left - 8))\" y=\"\(svgNumber(y + 4))\" text-anchor=\"end\">1e\(exponent)</text>\n"
    }
    for tick in LossPlot.ticks(xLow, xHigh, count: 8, integer: true).values {
      let x = px(tick)
      out +=
        "<line x1=\"\(svgNumber(x))\" y1=\"\(svgNumber(plot.top + plot.height))\" x2=\"\(svgNumber(x))\" y2=\"\(svgNumber(plot.top + plot.height + 5))\" stroke=\"#444\"/>\n"
      out +=
        "<text x=\"\(svgNumber(x))\" y=\"\(svgNumber(plot.top + plot.height + 18))\" text-anchor=\"middle\">\(Int(tick))</text>\n"
    }
    out +=
      "<text x=\"\(svgNumber(plot.left + plot.width / 2))\" y=\"\(svgNumber(plot.top + plot.height + 38))\" text-anchor=\"middle\">training step</text>\n"
    let middle = plot.top + plot.height / 2
    out +=
      "<text x=\"18\" y=\"\(svgNumber(middle))\" text-anchor=\"middle\" transform=\"rotate(-90 18 \(svgNumber(middle)))\">gradient norm (log scale)</text>\n"
    for (index, (layer, points)) in zip(layers, series).enumerated() {
      let color = Self.color(index, of: layers.count)
      out += "<g class=\"layer\" data-layer=\"\(svgEscape(layer.name))\">\n"
      if !points.isEmpty {
        let coordinates = points.map { "\(svgNumber(px($0.0))),\(svgNumber(py(log10($0.1))))" }
        out +=
          "<polyline points=\"\(coordinates.joined(separator: " "))\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"1.8\"/>\n"
      }
      let legendY = plot.top + 10 + Double(index) * 16
      let legendX = plot.left + plot.width + 16
      out +=
        "<line x1=\"\(svgNumber(legendX))\" y1=\"\(svgNumber(legendY - 4))\" x2=\"\(svgNumber(legendX + 24))\" y2=\"\(svgNumber(legendY - 4))\" stroke=\"\(color)\" stroke-width=\"3\"/>\n"
      out +=
        "<text x=\"\(svgNumber(legendX + 30))\" y=\"\(svgNumber(legendY))\">\(svgEscape(layer.name))</text>\n"
      out += "</g>\n"
    }
    out += "</svg>\n"
    return out
  }

  /// From dark purple (first layer) through teal to yellow (last), as matplotlib's viridis.
  static func color(_ index: Int, of count: Int) -> String {
    let stops: [(Double, Double, Double)] = [
      (68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37),
    ]
    let t = count > 1 ? Double(index) / Double(count - 1) : 0
    let position = t * Double(stops.count - 1)
    let lower = min(Int(position), stops.count - 2)
    let fraction = position - Double(lower)
    let (a, b) = (stops[lower], stops[lower + 1])
    func mix(_ x: Double, _ y: Double) -> Int { Int((x + (y - x) * fraction).rounded()) }
    return String(
      format: "#%02x%02x%02x", mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
  }
}

/// Coordinates with at most two decimals, no trailing zeros.
private func svgNumber(_ value: Double) -> String {
  let rounded = (value * 100).rounded() / 100
  if rounded == rounded.rounded() { return String(Int(rounded)) }
  return String(format: "%.2f", rounded)
}

/// Text for SVG content or a quoted attribute: markup characters as entities, control characters
/// (not allowed in XML 1.0) as visible escapes.
private func svgEscape(_ text: String) -> String {
  TerminalText.escaped(text).replacingOccurrences(of: "&", with: "&amp;")
    .replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    .replacingOccurrences(of: "\"", with: "&quot;").replacingOccurrences(of: "'", with: "&apos;")
}
