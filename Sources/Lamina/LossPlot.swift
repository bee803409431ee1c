import Foundation
import LaminaSupport

/// An SVG chart of training history: training and validation loss per epoch, and validation accuracy
/// in a second panel when there is any. Hand-written SVG, readable in any browser.
///
///     try LossPlot.write(history.epochs, title: "DigitsMLP", to: "loss.svg")
public enum LossPlot {
  static let width = 720.0
  static let panelHeight = 300.0
  static let accuracyHeight = 200.0
  static let margin = (left: 70.0, right: 24.0, top: 44.0, bottom: 48.0)
  static let trainColor = "#1f77b4"
  static let validationColor = "#ff7f0e"
  static let accuracyColor = "#2ca02c"

  /// Colors of further curves (a second training step, a second validation loss).
  static let palette = [
    "#1f77b4", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f",
  ]

  /// The keys of the dictionaries, in the order they first appear (sorted within one).
  static func orderedKeys(_ dictionaries: [[String: Double]]) -> [String] {
    var keys: [String] = []
    for dictionary in dictionaries {
      for key in dictionary.keys.sorted() where !keys.contains(key) { keys.append(key) }
    }
    return keys
  }

  /// Writes the chart to `path` atomically.
  public static func write(_ epochs: [EpochMetrics], title: String = "", to path: String) throws {
    try AtomicFile.write(Data(svg(epochs, title: title).utf8), to: path)
  }

  /// The SVG document.
  public static func svg(_ epochs: [EpochMetrics], title: String = "") -> String {
    let hasAccuracy = epochs.contains { $0.validationAccuracy != nil }
    let height = margin.top + panelHeight + (hasAccuracy ? accuracyHeight + 30 : 0) + margin.bottom
    var out = """
      <?xml version="1.0" encoding="UTF-8"?>
      <svg xmlns="http://www.w3.org/2000/svg" width="\(number(width))" height="\(number(height))" \
      viewBox="0 0 \(number(width)) \(number(height))" font-family="Helvetica, Arial, sans-serif" font-size="12">
      <rect width="100%" height="100%" fill="white"/>

      """
    let heading = title.isEmpty ? "Training history" : "\(title): training history"
    out +=
      "<text x=\"\(number(width / 2))\" y=\"22\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">\(escape(heading))</text>\n"

    let xs = epochs.map { Double($0.epoch) }
    let xRange = (min: min(xs.min() ?? 1, 1), max: max(xs.max() ?? 1, 2))
    // One curve per training step (a GAN's discriminator and generator) and per validation loss
    // when there are several; else the training and validation loss.
    var curves: [(label: String, points: [(Double, Double)], dashed: Bool)] = []
    let stepNames = orderedKeys(epochs.map { $0.stepLosses ?? [:] })
    if stepNames.isEmpty {
      curves.append(("training loss", epochs.map { (Double($0.epoch), $0.trainLoss) }, false))
    } else {
      for name in stepNames {
        let points = epochs.compactMap { metrics in
          metrics.stepLosses?[name].map { (Double(metrics.epoch), $0) }
        }
        curves.append(("\(name) training loss", points, false))
      }
    }
    let validationNames = orderedKeys(epochs.map { $0.validationLosses ?? [:] })
    if validationNames.isEmpty {
      let points = epochs.compactMap { metrics in
        metrics.validationLoss.map { (Double(metrics.epoch), $0) }
      }
      if !points.isEmpty { curves.append(("validation loss", points, true)) }
    } else {
      for name in validationNames {
        let points = epochs.compactMap { metrics in
          metrics.validationLosses?[name].map { (Double(metrics.epoch), $0) }
        }
        curves.append(("validation \(name)", points, true))
      }
    }
    curves = curves.map { ($0.label, $0.points.filter { $0.1.isFinite }, $0.dashed) }
    let losses = curves.flatMap { $0.points.map(\.1) }
    let lossPanel = Panel(
      x: margin.left, y: margin.top, width: width - margin.left - margin.right,
      height: panelHeight, xRange: xRange,
      yRange: paddedRange(losses.min() ?? 0, losses.max() ?? 1), yLabel: "loss")
    out += lossPanel.axes(xLabel: hasAccuracy ? nil : "epoch")
    var legend: [(String, String, Bool)] = []
    var trainIndex = 0
    var validationIndex = 0
    for curve in curves {
      // The first training curve keeps the train color and the first validation curve its own,
      // as in a one-step plot; further ones take the next palette colors.
      let color: String
      if curve.dashed {
        color =
          validationIndex == 0 ? validationColor : palette[(validationIndex + 3) % palette.count]
        validationIndex += 1
      } else {
        color = trainIndex == 0 ? trainColor : palette[trainIndex % palette.count]
        trainIndex += 1
      }
      let id =
        curves.count <= 2 && (curve.label == "training loss" || curve.label == "validation loss")
        ? (curve.dashed ? "validation-loss" : "train-loss")
        : (curve.dashed ? "validation-loss-" : "train-loss-")
          + curve.label.filter { $0.isLetter || $0.isNumber || $0 == "_" }
      out += lossPanel.series(curve.points, color: color, dashed: curve.dashed, id: id)
      legend.append((curve.label, color, curve.dashed))
    }
    out += lossPanel.legend(legend)

    if hasAccuracy {
      let accuracy = epochs.compactMap { metrics in
        metrics.validationAccuracy.map { (Double(metrics.epoch), $0 * 100) }
      }
      let values = accuracy.map(\.1)
      let accuracyPanel = Panel(
        x: margin.left, y: margin.top + panelHeight + 30, width: lossPanel.width,
        height: accuracyHeight, xRange: xRange,
        yRange: paddedRange(values.min() ?? 0, min(values.max() ?? 100, 100)),
        yLabel: "accuracy (%)")
      out += accuracyPanel.axes(xLabel: "epoch")
      out += accuracyPanel.series(
        accuracy, color: accuracyColor, dashed: false, id: "validation-accuracy")
      // Accuracy rises toward the top right; its legend goes below the curve.
      out += accuracyPanel.legend([("validation accuracy", accuracyColor, false)], atBottom: true)
    }
    out += "</svg>\n"
    return out
  }

  /// One plotting area with its data ranges.
  struct Panel {
    var x, y, width, height: Double
    var xRange: (min: Double, max: Double)
    var yRange: (min: Double, max: Double)
    var yLabel: String

    func px(_ value: Double) -> Double {
      x + (value - xRange.min) / (xRange.max - xRange.min) * width
    }
    func py(_ value: Double) -> Double {
      y + height - (value - yRange.min) / (yRange.max - yRange.min) * height
    }

    func axes(xLabel: String?) -> String {
      var out = "<g class=\"axes\">\n"
      out +=
        "<rect x=\"\(number(x))\" y=\"\(number(y))\" width=\"\(number(width))\" height=\"\(number(height))\" fill=\"none\" stroke=\"#444\"/>\n"
      let yTicks = LossPlot.ticks(yRange.min, yRange.max, count: 6)
      for tick in yTicks.values {
        let ty = py(tick)
        out +=
          "<line x1=\"\(number(x))\" y1=\"\(number(ty))\" x2=\"\(number(x + width))\" y2=\"\(number(ty))\" stroke=\"#e5e5e5\"/>\n"
        out +=
          "<line x1=\"\(number(x - 5))\" y1=\"\(number(ty))\" x2=\"\(number(x))\" y2=\"\(number(ty))\" stroke=\"#444\"/>\n"
        out +=
          "<text x=\"\(number(x - 8))\" y=\"\(number(ty + 4))\" text-anchor=\"end\">\(LossPlot.label(tick, decimals: yTicks.decimals))</text>\n"
      }
      var xTicks = LossPlot.ticks(xRange.min, xRange.max, count: 10, integer: true).values
      // Always label the first epoch.
      if let first = xTicks.first, first > xRange.min,
        first - xRange.min >= (xTicks.count > 1 ? (xTicks[1] - first) / 2 : 1)
      {
        xTicks.insert(xRange.min, at: 0)
      }
      for tick in xTicks {
        let tx = px(tick)
        out +=
          "<line x1=\"\(number(tx))\" y1=\"\(number(y + height))\" x2=\"\(number(tx))\" y2=\"\(number(y + height + 5))\" stroke=\"#444\"/>\n"
        out +=
          "<text x=\"\(number(tx))\" y=\"\(number(y + height + 18))\" text-anchor=\"middle\">\(LossPlot.label(tick, decimals: 0))</text>\n"
      }
      if let xLabel {
        out +=
          "<text x=\"\(number(x + width / 2))\" y=\"\(number(y + height + 38))\" text-anchor=\"middle\">\(escape(xLabel))</text>\n"
      }
      let cy = y + height / 2
      out +=
        "<text x=\"16\" y=\"\(number(cy))\" text-anchor=\"middle\" transform=\"rotate(-90 16 \(number(cy)))\">\(escape(yLabel))</text>\n"
      out += "</g>\n"
      return out
    }

    func series(_ points: [(Double, Double)], color: String, dashed: Bool, id: String) -> String {
      guard !points.isEmpty else { return "" }
      let coordinates = points.map { "\(number(px($0.0))),\(number(py($0.1)))" }
      var out = "<g id=\"\(id)\">\n"
      out +=
        "<polyline points=\"\(coordinates.joined(separator: " "))\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\"\(dashed ? " stroke-dasharray=\"6 4\"" : "")/>\n"
      if points.count <= 60 {
        for (px, py) in points.map({ (self.px($0.0), self.py($0.1)) }) {
          out +=
            "<circle cx=\"\(number(px))\" cy=\"\(number(py))\" r=\"2.5\" fill=\"\(color)\"/>\n"
        }
      }
      out += "</g>\n"
      return out
    }

    func legend(_ entries: [(String, String, Bool)], atBottom: Bool = false) -> String {
      // About 7 pixels a character at 12 px.
      let boxWidth = max(170.0, Double(entries.map(\.0.count).max() ?? 0) * 7 + 54)
      let boxHeight = Double(entries.count) * 18 + 10
      let left = x + width - boxWidth - 10
      let top = atBottom ? y + height - boxHeight - 10 : y + 10
      var out = "<g class=\"legend\">\n"
      out +=
        "<rect x=\"\(number(left))\" y=\"\(number(top))\" width=\"\(number(boxWidth))\" height=\"\(number(boxHeight))\" fill=\"white\" fill-opacity=\"0.9\" stroke=\"#bbb\"/>\n"
      for (index, (name, color, dashed)) in entries.enumerated() {
        let ly = top + 15 + Double(index) * 18
        out +=
          "<line x1=\"\(number(left + 8))\" y1=\"\(number(ly - 4))\" x2=\"\(number(left + 36))\" y2=\"\(number(ly - 4))\" stroke=\"\(color)\" stroke-width=\"2\"\(dashed ? " stroke-dasharray=\"6 4\"" : "")/>\n"
        out += "<text x=\"\(number(left + 44))\" y=\"\(number(ly))\">\(escape(name))</text>\n"
      }
      out += "</g>\n"
      return out
    }
  }

  /// A range with a little room above and below; a flat series gets a visible band.
  static func paddedRange(_ low: Double, _ high: Double) -> (min: Double, max: Double) {
    guard low.isFinite, high.isFinite else { return (0, 1) }
    if high - low < 1e-12 {
      let pad = max(abs(low) * 0.1, 1e-3)
      return (low - pad, high + pad)
    }
    let pad = (high - low) * 0.05
    return (low - pad, high + pad)
  }

  /// Round tick values (1, 2 or 5 times a power of ten apart) inside [low, high].
  static func ticks(_ low: Double, _ high: Double, count: Int, integer: Bool = false) -> (
    values: [Double], decimals: Int
  ) {
    let raw = (high - low) / Double(max(count, 1))
    let magnitude = pow(10, floor(log10(raw)))
    var step = [1.0, 2, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? 10 * magnitude
    if integer { step = max(1, step.rounded(.up)) }
    let first = (low / step).rounded(.up) * step
    var values: [Double] = []
    var value = first
    while value <= high + step * 1e-9 && values.count < 100 {
      values.append(abs(value) < step * 1e-9 ? 0 : value)
      value += step
    }
    return (values, max(0, -Int(floor(log10(step)))))
  }

  static func label(_ value: Double, decimals: Int) -> String {
    String(format: "%.\(decimals)f", value)
  }
}

/// Coordinates with at most two decimals, no trailing zeros.
private func number(_ value: Double) -> String {
  let rounded = (value * 100).rounded() / 100
  if rounded == rounded.rounded() { return String(Int(rounded)) }
  return String(format: "%.2f", rounded)
}

private func escape(_ text: String) -> String {
  text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
    .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
}
