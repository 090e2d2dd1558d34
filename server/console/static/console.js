// Progressive enhancement only: every page works without this file.
// - forms with data-confirm ask first;
// - file uploads accept a dropped file and show their progress (the page the server answers replaces this one);
// - an export's download shows how much has arrived while the server streams it (without this file the
//   browser's own download does the same, with its own progress).
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) event.preventDefault();
  });

  function enhanceUpload(form) {
    var input = form.querySelector("input[type=file]");
    var zone = form.querySelector(".drop");
    var bar = form.querySelector("progress");
    if (!input || !zone) return;
    ["dragenter", "dragover"].forEach(function (name) {
      zone.addEventListener(name, function (event) { event.preventDefault(); zone.classList.add("dragging"); });
    });
    ["dragleave", "drop"].forEach(function (name) {
      zone.addEventListener(name, function () { zone.classList.remove("dragging"); });
    });
    zone.addEventListener("drop", function (event) {
      event.preventDefault();
      if (event.dataTransfer && event.dataTransfer.files.length) input.files = event.dataTransfer.files;
    });
    form.addEventListener("submit", function (event) {
      if (!window.XMLHttpRequest || !window.FormData || !bar || event.defaultPrevented) return;
      event.preventDefault();
      var request = new XMLHttpRequest();
      request.open("POST", form.action);
      bar.hidden = false;
      request.upload.addEventListener("progress", function (e) {
        if (e.lengthComputable) bar.value = Math.round((e.loaded / e.total) * 100);
      });
      request.addEventListener("load", function () {
        // Same as without JavaScript: show the page the server answered, at its URL after redirects.
        var url = request.responseURL;
        document.open(); document.write(request.responseText); document.close();
        if (url && url !== form.action) window.history.replaceState(null, "", url);
      });
      request.addEventListener("error", function () { form.submit(); });
      request.send(new FormData(form));
    });
  }
  Array.prototype.forEach.call(document.querySelectorAll("form[data-upload]"), enhanceUpload);
  function enhanceExport(form) {
    var text = form.querySelector("[data-progress-text]");
    var bar = form.querySelector("progress");
    form.addEventListener("submit", function (event) {
      var button = event.submitter;
      if (!button || !button.hasAttribute("data-download") || !window.fetch || !window.ReadableStream) return;
      event.preventDefault();
      var data = new FormData(form);
      data.delete("preview");
      var url = button.formAction + "?" + new URLSearchParams(data).toString();
      var received = 0;
      var chunks = [];
      text.hidden = false;
      bar.hidden = false;
      button.disabled = true;
      fetch(url, { credentials: "same-origin" }).then(function (response) {
        // A bad option: the server answers with the page that says what is wrong.
        if (!response.ok || !response.body) { window.location.assign(url); return null; }
        var name = (/filename="?([^";]+)"?/.exec(response.headers.get("Content-Disposition") || "") || [])[1];
        var reader = response.body.getReader();
        function pump() {
          return reader.read().then(function (step) {
            if (step.done) return { name: name || "export", type: response.headers.get("Content-Type") };
            chunks.push(step.value);
            received += step.value.length;
            text.textContent = text.getAttribute("data-received") + " " + (received / 1048576).toFixed(1) + " MB";
            return pump();
          });
        }
        return pump();
      }).then(function (file) {
        if (!file) return;
        var link = document.createElement("a");
        link.href = URL.createObjectURL(new Blob(chunks, { type: file.type }));
        link.download = file.name;
        document.body.appendChild(link);
        link.click();
        link.remove();
        text.textContent = text.getAttribute("data-done");
      }).catch(function () {
        text.textContent = text.getAttribute("data-failed");
      }).finally(function () {
        bar.hidden = true;
        button.disabled = false;
      });
    });
  }

  document.querySelectorAll("form[data-export]").forEach(enhanceExport);
})();

// Dashboard charts: "Download as PNG" draws the chart's own SVG on a canvas (the CSV link needs no script).
(function () {
  "use strict";
  Array.prototype.forEach.call(document.querySelectorAll("button.js-png"), function (button) {
    var figure = document.querySelector('[data-chart="' + button.getAttribute("data-target") + '"]');
    var svg = figure && figure.querySelector("svg");
    if (!svg || !window.XMLSerializer || !document.createElement("canvas").toBlob) return;
    button.hidden = false;
    button.addEventListener("click", function () {
      var box = svg.viewBox.baseVal, scale = 2;
      var image = new Image();
      image.onload = function () {
        var canvas = document.createElement("canvas");
        canvas.width = box.width * scale; canvas.height = box.height * scale;
        var context = canvas.getContext("2d");
        context.fillStyle = "#fff"; context.fillRect(0, 0, canvas.width, canvas.height);
        context.drawImage(image, 0, 0, canvas.width, canvas.height);
        canvas.toBlob(function (blob) {
          var link = document.createElement("a");
          link.href = URL.createObjectURL(blob);
          link.download = button.getAttribute("data-target") + ".png";
          document.body.appendChild(link); link.click(); link.remove();
        }, "image/png");
      };
      image.src = "data:image/svg+xml;charset=utf-8," + encodeURIComponent(new XMLSerializer().serializeToString(svg));
    });
  });
})();
