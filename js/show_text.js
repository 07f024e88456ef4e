// Shows the text a Pixel Cascade output node returns (captions, similarity scores) inside the node.
import { app } from "../../scripts/app.js";

const TEXT_NODES = new Set(["PixelCascadeGITCaption", "PixelCascadeEmbeddingSimilarity", "PixelCascadeBestOfN",
                            "PixelCascadeSaveImageWithCaptions"]);

function showText(node, lines) {
  const text = (Array.isArray(lines) ? lines : [lines]).join("\n\n");
  let widget = (node.widgets || []).find((w) => w.name === "pixel_cascade_output");
  if (!widget) {
    const area = document.createElement("textarea");
    area.readOnly = true;
    area.style.cssText = "width:100%;height:100%;font-size:11px;resize:none;";
    widget = node.addDOMWidget("pixel_cascade_output", "textarea", area, { serialize: false });
    widget.serializeValue = () => undefined;
  }
  widget.element.value = text;
  node.setDirtyCanvas(true, true);
}

app.registerExtension({
  name: "PixelCascade.ShowText",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!TEXT_NODES.has(nodeData.name)) return;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      onExecuted?.apply(this, arguments);
      if (message?.text) showText(this, message.text);
    };
  },
});
