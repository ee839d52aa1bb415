"""A function handler using the context: headers in, status and content type out."""



def handle(data, context):
    if data is None:  # TorchServe's function handlers initialise on (None, context)
        return None
    answers = []
    for idx, row in enumerate(data):
        mode = context.get_request_header(idx, "x-mode") or "json"
        body = row.get("data") or row.get("body")
        if mode == "boom":
            raise ValueError("asked to fail")
        if mode == "text":
            context.set_response_content_type(idx, "text/plain")
            answers.append(f"text for {context.get_request_header(idx, 'x-name')}")
        elif mode == "bytes":
            context.set_response_content_type(idx, "application/octet-stream")
            answers.append(bytes(range(8)))
        elif mode == "status":
            context.set_response_status(422, "Unprocessable", idx)
            answers.append({"error": "rejected by the handler"})
        else:
            answers.append({
                "model": context.manifest["model"]["modelName"],
                "version": context.manifest["model"]["modelVersion"],
                "batch_size": context.system_properties["batch_size"],
                "keys": sorted(row),
                "body_type": type(body).__name__,
                "body": body if isinstance(body, (dict, list, str)) else len(body),
                "x_name": context.get_request_header(idx, "x-name"),
                "request_id_set": bool(context.get_request_id(idx)),
            })
    return answers
