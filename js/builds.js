// The full wasm builds this copy of the package ships. The published package ships both;
// `./build.sh demo` on a fresh machine ships the plain SIMD build alone (building the relaxed
// one from scratch would add minutes to a newcomer's set-up) and rewrites this file to say so.
export const FULL_BUILDS = ['relaxed', 'simd'];
