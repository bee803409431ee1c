import Foundation
import Lamina

/// `lamina import M.onnx -o M.lam [--weights M.safetensors]`: an ONNX model as a `.lam` model and
/// its weights.
enum ImportCommand: Command {
  static let name = "import"
  static let summary = "Translate an ONNX model into a .lam model and its weights"
  static let help = """
    usage: lamina import MODEL.onnx -o MODEL.lam [--weights W.safetensors]
                         [--loss cross_entropy [--label NAME]] [--model NAME]

    Reads the ONNX file (opset 6 onward; external data is read from the model's folder) and writes
    a readable .lam model, one `let` per node with a comment naming the ONNX node, and its weights
    (default: the .lam path with .safetensors). Initializers and constants become parameters with
    their full shapes; dynamic dimensions become symbolic ones. The result works with every other
    command: check, dump, compile, run, bench, and train to fine-tune it.
      --loss cross_entropy  add `input LABEL: i32[N]`, a cross-entropy loss on the logits of the
                            first output (the input of its softmax, if it ends with one) and
                            `train with adam(lr: 1e-4)`
      --label NAME          the label input's name (default label)
      --model NAME          the model's name (default: from the file name)
    An op lamina cannot translate is an error listing every unsupported op type, its count and its
    first node (`unsupported ONNX ops: ...`).
    """
  static let options = OptionSpec(valued: ["-o", "--weights", "--loss", "--label", "--model"])

  static func run(_ options: inout Options, console: Console) throws -> Int32 {
    let path = try options.modelPath()
    guard let output = options.value("-o") else { throw UsageError("missing -o MODEL.lam") }
    let weightsPath =
      options.value("--weights")
      ?? ((output as NSString).deletingPathExtension + ".safetensors")
    guard weightsPath != output, weightsPath != path, output != path else {
      throw UsageError(
        "the model, the .lam file and the weights file must be three different files")
    }
    if options.value("--label") != nil, options.value("--loss") == nil {
      throw UsageError("--label names the label of --loss; give --loss cross_entropy too")
    }
    let imported = try ONNXImporter.importModel(
      contentsOf: path,
      options: ONNXImportOptions(
        loss: options.value("--loss"), label: options.value("--label") ?? "label",
        modelName: options.value("--model")))
    try AtomicFile.checkWritable(output)
    try AtomicFile.checkWritable(weightsPath)
    try SafeTensors.write(
      imported.weights, metadata: ["written_by": "lamina import"], to: weightsPath)
    try AtomicFile.write(Data(imported.source.utf8), to: output)
    console.print(
      "wrote \(TerminalText.escaped(output)) (\(imported.inputNames.count) inputs, \(imported.outputNames.count) outputs) and \(imported.weights.count) weights to \(TerminalText.escaped(weightsPath))"
    )
    return 0
  }
}
