// examples/swift_client: Lamina from a Swift program.
//
//     swift run --package-path examples/swift_client SwiftClient [MODEL.lam] [IMAGES.npy]
//
// Compiles the digits model (to C, then a shared library, cached in $LAMINA_CACHE_DIR or
// ~/.cache/lamina), gives it weights from the initializers, classifies the first five test images
// and prints each one's class and the sum of its probabilities. The weights are untrained, so the
// classes are arbitrary; `lamina train` or `compiled.loadWeights(from:)` would give real ones.
import Foundation
import Lamina

/// The examples folder, found from this file's path so the program runs from any directory.
let examples = URL(fileURLWithPath: #filePath)
  .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
  .deletingLastPathComponent()
let arguments = Array(CommandLine.arguments.dropFirst())
let modelPath =
  arguments.count > 0 ? arguments[0] : examples.appendingPathComponent("digits_mlp.lam").path
let imagesPath =
  arguments.count > 1
  ? arguments[1] : examples.appendingPathComponent("data/digits/test/x.npy").path
let imageCount = 5

do {
  let model = try Model(contentsOf: modelPath)
  let parameters = try model.initialParameters(seed: 42)
  let compiled = try model.compile(parameters: parameters)
  print("compiled \(compiled.signature.model) to \(compiled.libraryPath)")

  // The first rows of the images file: f32[N, 64], pixels scaled to [0, 1].
  let images = try NPY.read(contentsOf: imagesPath)
  guard images.dtype == .f32, images.rank == 2, images.shape[0] >= imageCount else {
    throw RunError(
      "\(imagesPath): expected f32[N, features] with N >= \(imageCount), got \(images.typeDescription)"
    )
  }
  let features = images.shape[1]
  let x = Tensor(
    shape: [imageCount, features],
    scalars: Array(images.scalars(as: Float.self).prefix(imageCount * features)))

  // The batch size is symbolic: it comes from x's shape.
  guard let probs = try compiled.forward(["x": x])["probs"] else {
    throw RunError("the model has no output probs")
  }
  let classes = probs.shape[1]
  let values = probs.scalars(as: Float.self)
  for image in 0..<imageCount {
    let row = values[image * classes..<(image + 1) * classes]
    let predicted = row.indices.max { row[$0] < row[$1] }! - image * classes
    let sum = row.reduce(0, +)
    print("image \(image): class \(predicted), probabilities sum to \(String(format: "%.6f", sum))")
  }
} catch let error as CompileError {
  FileHandle.standardError.write(Data((error.rendered + "\n").utf8))
  exit(1)
} catch {
  FileHandle.standardError.write(Data("swift-client: \(error)\n".utf8))
  exit(1)
}
