// The form preview: ODK Web Forms (a Vue component) renders the version's XForm; nothing is submitted.
import { createApp, h } from "vue";
import { OdkWebForm, webFormsPlugin } from "/console/assets/web-forms/index.js";

const root = document.getElementById("form");
const response = await fetch(root.dataset.xform, { credentials: "same-origin" });
const formXml = await response.text();
const app = createApp({
  render: () =>
    h(OdkWebForm, {
      formXml,
      // Media files are not part of the preview: questions that show one get a blank instead.
      fetchFormAttachment: () => Promise.resolve(new Response("", { status: 404 })),
      missingResourceBehavior: "BLANK",
      onSubmit: (_payload, callback) => callback && callback({ status: "success" }),
    }),
});
app.use(webFormsPlugin);
root.replaceChildren();
app.mount(root);
