// swift-tools-version:6.0
// A program that uses Lamina as a package dependency: compiles a model, runs it, prints results.
import PackageDescription

let package = Package(
  name: "SwiftClient",
  dependencies: [
    // The Lamina repository this example lives in; elsewhere, a URL and a version. `name:` because a
    // path dependency is otherwise known by its folder's name, which depends on the checkout.
    .package(name: "Lamina", path: "../..")
  ],
  targets: [
    .executableTarget(
      name: "SwiftClient",
      dependencies: [.product(name: "Lamina", package: "Lamina")])
  ]
)
