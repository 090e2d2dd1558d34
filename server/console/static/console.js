// Progressive enhancement only: every page works without this file.
// - forms with data-confirm ask first;
// - file uploads accept a dropped file and show their progress (the page the server answers replaces this one).
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
