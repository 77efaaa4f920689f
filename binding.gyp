{
  "targets": [
    {
      "target_name": "masksub_native",
      "sources": ["native/core.cc", "native/ops.cc", "native/allocator.cc", "native/distributed.cc", "native/foreach.cc", "native/autocast.cc"],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "<!@(node scripts/torch-config.mjs include)"
      ],
      "defines": ["NAPI_CPP_EXCEPTIONS", "NAPI_VERSION=8", "<!@(node scripts/torch-config.mjs defines)"],
      "cflags!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-frtti", "-O2", "-Wno-unused-parameter", "-Wno-deprecated-declarations", "-Werror=missing-declarations"],
      "libraries": ["<!@(node scripts/torch-config.mjs libraries)"]
    }
  ]
}
