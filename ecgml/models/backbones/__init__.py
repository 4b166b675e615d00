"""Built-in backbones, one module each; ``conf/model/<name>.yaml`` names the class to build."""
