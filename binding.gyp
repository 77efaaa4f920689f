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
    },
    {
      "target_name": "masksub_image",
      "conditions": [
        ["'<!(node scripts/jpeg-config.mjs)'=='1'", {
          "sources": ["native/image/image.cc"],
          "defines": ["NAPI_VERSION=8"],
          "cflags_cc!": ["-std=gnu++17"],
          "cflags_cc": ["-std=c++17", "-O3", "-ffp-contract=off", "-Wno-unused-parameter", "-Wno-clobbered"],
          "libraries": ["-ljpeg"]
        }, {
          "type": "none"
        }]
      ]
    }
  ]
}
